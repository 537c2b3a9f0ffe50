"""The catalog's entries, licences, the facenet conversion, import/remove and the `faceid models` command."""

import argparse
import io
import re
import sys
import types
import zipfile

import numpy as np
import pytest

from faceid.zoo import ZooError, cached_path, import_model, is_model_name, known_models, pull, remove_model
from faceid.zoo.catalog import ALIGNMENTS, KINDS
from tests.zoo.test_download import point, serving, sha, tiny_onnx


def test_every_entry_is_complete():
    from faceid.model_input import ModelInput

    entries = known_models()
    assert {"dlib_resnet_v1", "facenet_vggface2", "facenet_casia_webface", "buffalo_l", "buffalo_s", "sface"} <= {
        e.name for e in entries}
    for entry in entries:
        assert is_model_name(entry.name) and entry.kind in KINDS and entry.alignment in ALIGNMENTS
        assert entry.embedding_dim in (128, 512) and entry.licence and entry.title and entry.source
        assert re.search(r"\d+\.\d+%", entry.figure), entry.name
        assert bool(entry.urls) == (entry.kind != "dlib") and all(u.startswith("https://") for u in entry.urls)
        for digest in (entry.sha256, entry.member_sha256):
            assert digest is None or re.fullmatch("[0-9a-f]{64}", digest), entry.name
        assert (entry.member is not None) == (entry.kind == "onnx_zip")
        preprocessing = ModelInput.from_description(entry.preprocessing(), entry.name)
        assert preprocessing.input_size == entry.input_size and entry.input_description()
    assert not is_model_name("models/buffalo_l.onnx")


def test_non_commercial_models_need_accept_licence(monkeypatch, tmp_path):
    with serving({}) as server:
        point(monkeypatch, "buffalo_l", (server.url("buffalo_l.zip"),))
        with pytest.raises(ZooError, match="--accept-licence"):
            pull("buffalo_l", progress=False)
        file = tmp_path / "buffalo_l.zip"
        file.write_bytes(b"zip")
        with pytest.raises(ZooError, match="--accept-licence"):
            import_model(file, "buffalo_l")
        assert server.requests == []
    assert all(e.commercial_use == (e.licence != "non-commercial research only") for e in known_models())


def test_facenet_conversion_keeps_the_embeddings(monkeypatch, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two tiny forwards: threads only add start-up and contention
    try:
        _check_facenet_conversion(monkeypatch, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _check_facenet_conversion(monkeypatch, tmp_path):
    import torch
    from facenet_pytorch import InceptionResnetV1

    from faceid.model_input import ModelInput
    from faceid.torch_embedder import TorchEmbedder

    torch.manual_seed(0)
    facenet = InceptionResnetV1(pretrained=None, classify=False).eval()
    for module in facenet.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    state = facenet.state_dict()
    state.update({"logits.weight": torch.randn(7, 512), "logits.bias": torch.randn(7)})  # as in the releases
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    with serving({"vggface2.pt": data}) as server:
        point(monkeypatch, "facenet_vggface2", (server.url("vggface2.pt"),), sha256=sha(data))
        path = pull("facenet_vggface2", progress=False)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["alignment"] == "facenet_160" and checkpoint["zoo_name"] == "facenet_vggface2"
    preprocessing = ModelInput(**{k: tuple(v) if isinstance(v, list) else v
                                  for k, v in checkpoint["preprocessing"].items()})
    crops = np.random.default_rng(0).integers(0, 256, (2, 160, 160, 3), dtype=np.uint8)
    images = preprocessing.apply(crops)
    np.testing.assert_allclose(images, (crops.transpose(0, 3, 1, 2) - 127.5) / 128, atol=1e-5)
    converted = TorchEmbedder.from_checkpoint(path, device="cpu").model
    raw = {}
    facenet.last_bn.register_forward_hook(lambda module, inputs, output: raw.update(output=output))
    with torch.no_grad():
        batch = torch.from_numpy(images[:, :, 40:120, 40:120].copy())  # 80 px: the same layers, a quarter of the work
        normalised = facenet(batch)
        np.testing.assert_allclose(converted(batch).numpy(), raw["output"].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(torch.nn.functional.normalize(raw["output"]).numpy(), normalised.numpy(), atol=1e-5)

    not_facenet = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(3)}, not_facenet)
    remove_model("facenet_vggface2")
    point(monkeypatch, "facenet_vggface2", sha256=None)
    with pytest.raises(ZooError, match="does not hold facenet-pytorch InceptionResnetV1 weights"):
        import_model(not_facenet, "facenet_vggface2")
    assert cached_path("facenet_vggface2") is None


def _buffalo_zip(tmp_path, recognizer: bytes):
    path = tmp_path / "buffalo_l.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("det_10g.onnx", b"a detector")
        archive.writestr("w600k_r50.onnx", recognizer)
    return path


def test_insightface_pull_extracts_the_recognizer(monkeypatch, tmp_path, home):
    from faceid.export.embedder import load_embedder

    recognizer = tiny_onnx(dim=512)
    archive = _buffalo_zip(tmp_path, recognizer).read_bytes()
    with serving({"buffalo_l.zip": archive}) as server:
        point(monkeypatch, "buffalo_l", (server.url("buffalo_l.zip"),), sha256=sha(archive), member_sha256="1" * 64)
        with pytest.raises(ZooError, match="w600k_r50.onnx in .* has sha256"):
            pull("buffalo_l", accept_licence=True, progress=False)
        assert not [p for p in home.rglob("*") if p.is_file()]
        point(monkeypatch, "buffalo_l", (server.url("buffalo_l.zip"),), sha256=sha(archive),
              member_sha256=sha(recognizer))
        path = pull("buffalo_l", accept_licence=True, progress=False)
    assert path.read_bytes() == recognizer
    embedder = load_embedder(path, preprocessing=path.with_suffix(".yaml"))
    assert embedder.embedding_dim == 512 and embedder.model_input.mean == (0.5, 0.5, 0.5)


def test_import_and_remove_round_trip(monkeypatch, tmp_path, home):
    model = tiny_onnx()
    file = tmp_path / "face_recognition_sface_2021dec.onnx"
    file.write_bytes(model)
    point(monkeypatch, "sface", sha256=sha(model))
    path = import_model(file, "sface")
    assert path == home / "models" / "sface" / "sface.onnx" and path.read_bytes() == model and file.exists()
    assert path.with_suffix(".yaml").is_file() and cached_path("sface") == path
    assert remove_model("sface") == home / "models" / "sface" and cached_path("sface") is None
    with pytest.raises(ZooError, match="not in the cache"):
        remove_model("sface")

    file.write_bytes(model + b"tampered")
    with pytest.raises(ZooError, match="refusing"):
        import_model(file, "sface")
    assert cached_path("sface") is None
    with pytest.raises(ZooError, match="does not exist"):
        import_model(tmp_path / "missing.onnx", "sface")

    bare = tmp_path / "w600k_mbf.onnx"  # the recognizer alone, checked against the member checksum
    bare.write_bytes(tiny_onnx(dim=512))
    point(monkeypatch, "buffalo_s", member_sha256=sha(bare.read_bytes()))
    assert import_model(bare, "buffalo_s", accept_licence=True).read_bytes() == bare.read_bytes()


def test_dlib_model_is_converted_from_the_installed_package(monkeypatch, tmp_path):
    dat = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    dat.write_bytes(b"dlib weights")
    converted = []

    def convert_dlib_model(dat_path, checkpoint_path):
        converted.append(dat_path)
        checkpoint_path.write_bytes(b"checkpoint of " + dat_path.read_bytes())

    fake = types.SimpleNamespace(dlib_model_file=lambda: dat, convert_dlib_model=convert_dlib_model)
    monkeypatch.setitem(sys.modules, "faceid.zoo.dlib_format", fake)
    monkeypatch.setenv("FACEID_OFFLINE", "1")  # never needs the network
    path = pull("dlib_resnet_v1", progress=False)
    assert path.suffix == ".pt" and path.read_bytes() == b"checkpoint of dlib weights" and converted == [dat]
    remove_model("dlib_resnet_v1")
    assert import_model(dat, "dlib_resnet_v1") == path and path.is_file()


def _run(*argv: str) -> int:
    from faceid.commands import models

    parser = argparse.ArgumentParser()
    models.add_arguments(parser)
    return models.run(parser.parse_args(argv))


def test_models_command(monkeypatch, tmp_path, capsys):
    from faceid.commands import models

    assert models.SUMMARY
    model = tiny_onnx()
    point(monkeypatch, "sface", sha256=sha(model))
    file = tmp_path / "sface.onnx"
    file.write_bytes(model)
    assert _run("import", str(file), "--as", "sface") == 0
    assert _run("list") == 0
    listing = capsys.readouterr().out
    for name in ("dlib_resnet_v1", "facenet_vggface2", "buffalo_l", "sface"):
        assert name in listing
    assert re.search(r"sface\s+128\s+112 RGB\s+arcface_112\s+Apache-2.0\s+LFW 99.40%\s+cached", listing)
    assert re.search(r"buffalo_l\s+512 .* non-commercial research only .* not cached", listing)

    assert _run("info", "buffalo_s") == 0
    info = capsys.readouterr().out
    for text in ("buffalo_s.zip", "d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e",
                 "w600k_mbf.onnx", "arcface_112", "non-commercial", "--accept-licence", "LFW 99.70%"):
        assert text in info

    assert _run("pull", "buffalo_s") == 1
    output = capsys.readouterr()
    assert "licence: non-commercial research only" in output.out and "--accept-licence" in output.err
    assert _run("info", "nope") == 1 and "unknown model 'nope'" in capsys.readouterr().err
    assert _run("remove", "sface") == 0 and cached_path("sface") is None
