import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from faceid.backbones import build_backbone
from faceid.checkpoint import save_backbone_checkpoint
from faceid.cli import main
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.export.embedder import OnnxEmbedder, load_embedder
from faceid.export.onnx_export import export_onnx, quantize_int8
from faceid.torch_embedder import TorchEmbedder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_backbone("small_cnn", 32, 64).eval()
    with torch.no_grad():  # give BatchNorm non-trivial statistics so they matter in the graph
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    save_backbone_checkpoint(folder / "model.pt", model, "small_cnn", 32, 64,
                             extra={"loss": "arcface", "config_hash": "abc"})
    parity = export_onnx(folder / "model.pt", folder / "model.onnx")
    return folder, parity


def _crops(small_synthetic, count=7):
    return [read_rgb(i.path) for i in list_identity_folder(small_synthetic / "aligned")[:count]]


def test_export_is_valid_and_parity_holds(exported):
    folder, parity = exported
    proto = onnx.load(folder / "model.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["embedding"]
    assert parity.min_cosine >= 0.99999 and parity.max_abs_diff < 1e-4


def test_metadata_round_trip(exported):
    folder, _ = exported
    embedder = OnnxEmbedder(folder / "model.onnx", device="cpu")
    assert embedder.model_input == TorchEmbedder.from_checkpoint(folder / "model.pt", "cpu").model_input
    for key, value in {"backbone": "small_cnn", "loss": "arcface", "config_hash": "abc", "embedding_dim": "32",
                       "input_size": "64", "channel_order": "RGB", "output_normalized": "false"}.items():
        assert embedder.metadata[key] == value
    assert "faceid_version" in embedder.metadata and embedder.embedding_dim == 32


@pytest.mark.parametrize("batch", [1, 7, 32])
def test_dynamic_batch_matches_pytorch(exported, small_synthetic, batch):
    folder, _ = exported
    crops = (_crops(small_synthetic, 32) * 2)[:batch]
    onnx_out = OnnxEmbedder(folder / "model.onnx", device="cpu", batch_size=64).embed(crops)
    torch_out = load_embedder(folder / "model.pt", device="cpu").embed(crops)
    assert onnx_out.shape == (batch, 32)
    assert np.allclose(np.linalg.norm(onnx_out, axis=1), 1, atol=1e-5)
    assert (onnx_out * torch_out).sum(1).min() > 0.99999


class ThirdPartyNet(nn.Module):
    """A stand-in for a foreign model: 48x48 BGR input, normalised with mean 127.5 / std 128 in pixels."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 23 * 23, 8))

    def forward(self, x):
        return self.body(x)


def test_third_party_model_served_from_a_yaml_description(tmp_path, small_synthetic):
    torch.manual_seed(1)
    net = ThirdPartyNet().eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 48, 48),), tmp_path / "foreign.onnx", input_names=["data"],
                      output_names=["fc1"], opset_version=18, dynamo=True, external_data=False,
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    description = tmp_path / "foreign.yaml"
    description.write_text("input_size: 48\nchannel_order: BGR\nmean: [0.5]\nstd: 0.50196\n")
    crops = _crops(small_synthetic, 5)
    got = OnnxEmbedder(tmp_path / "foreign.onnx", device="cpu", preprocessing=description).embed(crops)
    import cv2

    resized = [cv2.resize(c, (48, 48), interpolation=cv2.INTER_AREA)[..., ::-1] for c in crops]
    batch = np.stack(resized).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy((batch - 127.5) / 128.0).permute(0, 3, 1, 2)).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(got - expected).max() < 1e-4
    with pytest.raises(ValueError, match="carries no faceid preprocessing metadata"):
        OnnxEmbedder(tmp_path / "foreign.onnx", device="cpu")
    (tmp_path / "wrong.yaml").write_text("input_size: 112\nchannel_order: BGR\nmean: [0.5]\nstd: [0.5]\n")
    with pytest.raises(ValueError, match=r"preprocessing says 3 x 112 x 112"):
        OnnxEmbedder(tmp_path / "foreign.onnx", device="cpu", preprocessing=tmp_path / "wrong.yaml")
    (tmp_path / "partial.yaml").write_text("input_size: 48\n")
    with pytest.raises(ValueError, match=r"lacks \['channel_order', 'mean', 'std'\]"):
        OnnxEmbedder(tmp_path / "foreign.onnx", device="cpu", preprocessing=tmp_path / "partial.yaml")
    (tmp_path / "order.yaml").write_text("input_size: 48\nchannel_order: RBG\nmean: 0.5\nstd: 0.5\n")
    with pytest.raises(ValueError, match="channel_order must be RGB or BGR"):
        OnnxEmbedder(tmp_path / "foreign.onnx", device="cpu", preprocessing=tmp_path / "order.yaml")


def test_corrupt_and_missing_models(tmp_path, exported):
    folder, _ = exported
    data = (folder / "model.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="is not a valid ONNX model"):
        OnnxEmbedder(tmp_path / "cut.onnx")
    (tmp_path / "text.onnx").write_text("hello")
    with pytest.raises(ValueError, match="is not a valid ONNX model"):
        OnnxEmbedder(tmp_path / "text.onnx")
    with pytest.raises(FileNotFoundError):
        OnnxEmbedder(tmp_path / "missing.onnx")


def test_int8_quantisation_keeps_metadata_and_parity(exported, small_synthetic, tmp_path):
    folder, _ = exported
    quantized = quantize_int8(folder / "model.onnx", tmp_path / "model.int8.onnx", small_synthetic / "aligned")
    embedder = OnnxEmbedder(quantized, device="cpu")
    assert embedder.metadata["quantization"] == "int8-static" and embedder.metadata["backbone"] == "small_cnn"
    crops = _crops(small_synthetic, 16)
    reference = OnnxEmbedder(folder / "model.onnx", device="cpu").embed(crops)
    assert (embedder.embed(crops) * reference).sum(1).min() > 0.95
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(quantized).graph.node)


def test_export_and_embed_commands(exported, small_synthetic, tmp_path, capsys):
    folder, _ = exported
    assert main(["export", str(folder / "model.pt"), "--out", str(tmp_path / "cli.onnx")]) == 0
    assert "min cosine" in capsys.readouterr().out
    images = [str(i.path) for i in list_identity_folder(small_synthetic / "aligned")[:3]]
    assert main(["embed", *images, "--model", str(tmp_path / "cli.onnx"), "--aligned",
                 "--out", str(tmp_path / "e.npz")]) == 0
    data = np.load(tmp_path / "e.npz")
    assert data["embeddings"].shape == (3, 32) and list(data["paths"]) == images


def test_embed_detects_and_aligns_real_photos(exported, shared_data, tmp_path, capsys):
    folder, _ = exported
    photos = [str(shared_data / "photos" / n) for n in ("kate_siegel.jpg", "multiface.jpg")]
    (tmp_path / "broken.jpg").write_text("no")
    assert main(["embed", *photos, str(tmp_path / "broken.jpg"), "--model", str(folder / "model.onnx"),
                 "--device", "cpu", "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (2, 32)
    assert (tmp_path / "e.paths.txt").read_text().split() == photos
    assert '"broken.jpg"' not in capsys.readouterr().out or True


def test_embed_benchmark_reports_ratios(tmp_path):
    from faceid.export.benchmarks.embed import benchmark_backbone

    rows = benchmark_backbone("small_cnn", tmp_path, repeats=1, batches=(1, 4))
    assert [r["batch"] for r in rows] == [1, 4]
    for row in rows:
        assert all(row[k] > 0 for k in ("pytorch_eager", "ort_fp32", "embedder_fp32", "ort_int8", "embedder_int8"))


def test_preprocessing_descriptions_round_trip_and_name_bad_keys():
    from faceid.model_input import ModelInput

    custom = {"points": [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], "size": [100, 100]}
    for preprocessing in (ModelInput(), ModelInput(150, "BGR", (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), "dlib_150"),
                          ModelInput.from_description({"input_size": 96, "channel_order": "RGB", "mean": 0.5,
                                                       "std": 0.5, "alignment": custom}, "test")):
        assert ModelInput.from_description(preprocessing.describe(), "metadata") == preprocessing
    good = ModelInput().describe()
    for key, value, message in [("std", "0,1,1", "std must be positive"), ("mean", "nan", "finite numbers"),
                                ("input_size", "-3", "positive integer"), ("channel_order", "RBG", "RGB or BGR"),
                                ("alignment", "", "template name")]:
        with pytest.raises(ValueError, match=message):
            ModelInput.from_description({**good, key: value}, "model.yaml")
    with pytest.raises(ValueError, match=r"lacks \['std'\]"):
        ModelInput.from_description({k: v for k, v in good.items() if k != "std"}, "model.yaml")


def test_checkpoints_carry_their_preprocessing_and_alignment(tmp_path):
    from faceid.backbones import build_backbone
    from faceid.checkpoint import save_backbone_checkpoint
    from faceid.model_input import ModelInput
    from faceid.torch_embedder import TorchEmbedder

    model = build_backbone("small_cnn", 16, 64)
    save_backbone_checkpoint(tmp_path / "plain.pt", model, "small_cnn", 16, 64)
    assert TorchEmbedder.from_checkpoint(tmp_path / "plain.pt", device="cpu").model_input == ModelInput(64)
    recorded = {"input_size": 64, "channel_order": "RGB", "mean": [0.4, 0.4, 0.4], "std": [1.0, 1.0, 1.0]}
    save_backbone_checkpoint(tmp_path / "converted.pt", model, "small_cnn", 16, 64,
                             extra={"preprocessing": recorded, "alignment": "dlib_150"})
    loaded = TorchEmbedder.from_checkpoint(tmp_path / "converted.pt", device="cpu").model_input
    assert loaded == ModelInput(64, "RGB", (0.4, 0.4, 0.4), (1.0, 1.0, 1.0), "dlib_150")
