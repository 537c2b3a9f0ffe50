"""`faceid.checkpoint`: the one backbone-checkpoint reader, its round trip and its errors (each naming the
file), and that every loader (TorchEmbedder, model.init, export) goes through it."""

import pytest
import torch

from faceid.backbones import build_backbone
from faceid.checkpoint import CHECKPOINT_FORMAT, read_backbone_checkpoint, save_backbone_checkpoint
from faceid.model_input import ModelInput
from faceid.torch_embedder import TorchEmbedder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_backbone("small_cnn", 16, 32, width=8)


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.pt"
    save_backbone_checkpoint(path, model, "small_cnn", 16, 32,
                             extra={"backbone_options": {"width": 8}, "loss": "arcface", "config_hash": "abc"})
    return path


def _raw(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_round_trip_keeps_fields_extra_and_weights(model, saved):
    checkpoint = read_backbone_checkpoint(saved)
    assert (checkpoint.path, checkpoint.backbone, checkpoint.embedding_dim, checkpoint.input_size) == (
        saved, "small_cnn", 16, 32)
    assert checkpoint.options == {"width": 8} and checkpoint.extra == {"loss": "arcface", "config_hash": "abc"}
    assert checkpoint.model_input == ModelInput(input_size=32)
    rebuilt = checkpoint.build().state_dict()
    assert all(torch.equal(rebuilt[key], value) for key, value in model.state_dict().items())
    assert _raw(saved)["format"] == CHECKPOINT_FORMAT


def test_a_recorded_model_input_and_alignment_are_read(model, tmp_path):
    recorded = {"input_size": 32, "channel_order": "BGR", "mean": [0.4, 0.4, 0.4], "std": [1.0, 1.0, 1.0]}
    save_backbone_checkpoint(tmp_path / "c.pt", model, "small_cnn", 16, 32,
                             extra={"backbone_options": {"width": 8}, "preprocessing": recorded,
                                    "alignment": "dlib_150"})
    checkpoint = read_backbone_checkpoint(tmp_path / "c.pt")
    assert checkpoint.model_input == ModelInput(32, "BGR", (0.4, 0.4, 0.4), (1.0, 1.0, 1.0), "dlib_150")
    assert checkpoint.extra == {"preprocessing": recorded, "alignment": "dlib_150"}


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*absent.pt does not exist"):
        read_backbone_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match=r"checkpoint .* is not a file"):
        read_backbone_checkpoint(tmp_path)


@pytest.mark.parametrize(("content", "message"), [
    (b"not a checkpoint", r"noise.pt is not a readable PyTorch checkpoint"),
    ([1, 2], r"noise.pt is not a faceid backbone checkpoint \(a list without a format"),
    ({"format": "faceid-training-1", "step": 3}, r"noise.pt is not a faceid backbone checkpoint \(its format is "
                                                 r"'faceid-training-1'; a run's model.pt or best.pt is one"),
    ({"format": "faceid-backbone-2"}, r"noise.pt is a faceid backbone checkpoint of format 'faceid-backbone-2', "
                                      r"which this faceid cannot read \(it reads faceid-backbone-1\)"),
])
def test_not_a_backbone_checkpoint(tmp_path, content, message):
    path = tmp_path / "noise.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        read_backbone_checkpoint(path)


@pytest.mark.parametrize(("change", "message"), [
    ({"state_dict": None}, r"model.pt: the backbone checkpoint lacks \['state_dict'\]"),
    ({"backbone": None, "input_size": None}, r"lacks \['backbone', 'input_size'\]"),
    ({"embedding_dim": "16"}, r"model.pt: embedding_dim must be a positive integer, got '16'"),
    ({"input_size": 0}, r"input_size must be a positive integer, got 0"),
    ({"backbone": ""}, r"backbone must be a backbone name"),
    ({"state_dict": [1]}, r"state_dict must be a mapping of tensors, got list"),
    ({"backbone_options": [8]}, r"model.pt: backbone_options must be a mapping, got list"),
    ({"preprocessing": "BGR"}, r"model.pt: preprocessing must be a mapping, got str"),
    ({"preprocessing": {"input_size": 32}}, r"model.pt preprocessing: .* lacks \['channel_order', 'mean', 'std'\]"),
    ({"alignment": "no_such_template"}, r"model.pt: alignment: "),
])
def test_bad_fields_are_named(saved, change, message):
    raw = _raw(saved)
    for key, value in change.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    torch.save(raw, saved)
    with pytest.raises(ValueError, match=message):
        read_backbone_checkpoint(saved)


def test_weights_that_do_not_fit_the_backbone(saved):
    raw = _raw(saved)
    raw["backbone_options"] = {"width": 16}
    torch.save(raw, saved)
    checkpoint = read_backbone_checkpoint(saved)
    with pytest.raises(ValueError, match=r"model.pt: its weights do not fit backbone 'small_cnn'"):
        checkpoint.build()


def test_extra_cannot_replace_the_core_fields(model, tmp_path):
    with pytest.raises(ValueError, match=r"extra keys \['format', 'input_size'\] would replace"):
        save_backbone_checkpoint(tmp_path / "m.pt", model, "small_cnn", 16, 32,
                                 extra={"format": "mine", "input_size": 64})
    assert not (tmp_path / "m.pt").exists()


def test_every_loader_reports_the_readers_errors(tmp_path):
    from faceid.export.onnx_export import export_onnx
    from faceid.training.pretrained import load_pretrained

    path = tmp_path / "last.pt"
    torch.save({"format": "faceid-training-1"}, path)
    with pytest.raises(ValueError, match="last.pt is not a faceid backbone checkpoint"):
        TorchEmbedder.from_checkpoint(path, device="cpu")
    with pytest.raises(ValueError, match=r"model.init '.*last.pt': .*last.pt is not a faceid backbone checkpoint"):
        load_pretrained(path)
    with pytest.raises(ValueError, match="last.pt is not a faceid backbone checkpoint"):
        export_onnx(path, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_torch_embedder_takes_a_checkpoint_read_already(saved):
    checkpoint = read_backbone_checkpoint(saved)
    embedder = TorchEmbedder.from_checkpoint(checkpoint, device="cpu")
    assert embedder.fingerprint == TorchEmbedder.from_checkpoint(saved, device="cpu").fingerprint
    assert (embedder.name, embedder.embedding_dim, embedder.model_input) == ("small_cnn", 16, ModelInput(32))
