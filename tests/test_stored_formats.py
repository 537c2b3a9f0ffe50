"""What faceid stores and must read back unchanged: the model-input text of embedder fingerprints (galleries
record it and refuse an embedder whose text differs), the fingerprints themselves, and the ONNX metadata keys.
The expected values are literals on purpose: a change here would break the galleries and models already made."""

import hashlib

import onnx
import torch
from onnx import TensorProto, helper

import faceid
from faceid.backbones import build_backbone
from faceid.checkpoint import read_backbone_checkpoint, save_backbone_checkpoint
from faceid.embedder import PixelEmbedder
from faceid.export.embedder import OnnxEmbedder
from faceid.export.onnx_export import metadata_for
from faceid.gallery.samples.resolver import embedder_fingerprint
from faceid.model_input import ModelInput
from faceid.torch_embedder import TorchEmbedder

DEFAULT_TEXT = ("Preprocessing(input_size=112, channel_order='RGB', mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), "
                "alignment='arcface_112')")
DLIB_LIKE = ModelInput(150, "BGR", (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), "dlib_150")


def test_model_input_fingerprint_text_is_fixed():
    assert ModelInput().fingerprint_text() == DEFAULT_TEXT
    assert DLIB_LIKE.fingerprint_text() == ("Preprocessing(input_size=150, channel_order='BGR', mean=(0.1, 0.2, 0.3), "
                                            "std=(1.0, 1.0, 1.0), alignment='dlib_150')")
    custom = ModelInput.from_description({"input_size": "112", "channel_order": "rgb", "mean": "0.5", "std": [0.5] * 3,
                                          "alignment": {"points": [[38.3, 51.7], [73.5, 51.5], [56.0, 71.7],
                                                                   [41.5, 92.4], [70.7, 92.2]], "size": 112}}, "test")
    assert custom.fingerprint_text() == (
        "Preprocessing(input_size=112, channel_order='RGB', mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), "
        "alignment='{\"points\":[[38.3,51.7],[73.5,51.5],[56.0,71.7],[41.5,92.4],[70.7,92.2]],\"size\":112}')")


def test_gallery_embedder_record_is_fixed():
    assert embedder_fingerprint(PixelEmbedder()) == {"fingerprint": "pixels-112", "embedding_dim": 37632,
                                                     "preprocessing": DEFAULT_TEXT}


def test_torch_embedder_fingerprints_are_fixed():
    assert TorchEmbedder(torch.nn.Flatten(), "flat", 8, DLIB_LIKE, "cpu").fingerprint == "422d28100db01db1"
    linear = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(linear.weight, 0.25)
    torch.nn.init.constant_(linear.bias, -1.0)
    assert TorchEmbedder(linear, "lin", 2, ModelInput(), "cpu").fingerprint == "6a1cf4cbe49a0eb1"


def test_onnx_embedder_fingerprint_hashes_the_file_and_the_fixed_text(tmp_path):
    graph = helper.make_graph([helper.make_node("Flatten", ["input"], ["embedding"])], "flat",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 37632])])
    path = tmp_path / "flat.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path)
    embedder = OnnxEmbedder(path, device="cpu", preprocessing=ModelInput())
    assert embedder.fingerprint == hashlib.sha256(path.read_bytes() + DEFAULT_TEXT.encode()).hexdigest()[:16]


def test_onnx_metadata_keys_are_fixed(tmp_path):
    torch.manual_seed(0)
    save_backbone_checkpoint(tmp_path / "m.pt", build_backbone("small_cnn", 16, 64), "small_cnn", 16, 64,
                             extra={"loss": "arcface", "config_hash": "abc"})
    assert metadata_for(read_backbone_checkpoint(tmp_path / "m.pt")) == {
        "format": "faceid-embedder-1", "input_size": "64", "channel_order": "RGB", "mean": "0.5,0.5,0.5",
        "std": "0.5,0.5,0.5", "alignment": "arcface_112", "output_normalized": "false", "embedding_dim": "16",
        "backbone": "small_cnn", "loss": "arcface", "config_hash": "abc", "faceid_version": faceid.__version__}


def test_embedding_caches_key_the_crop_itself_while_gallery_fingerprints_name_only_the_alignment():
    """A named template's geometry (dlib_150 gained a landmark mapping) may change between releases: cached
    embeddings of the old crop must not be reused, while galleries keep accepting the model that made them."""
    from faceid.alignment import AlignmentTemplate

    template = DLIB_LIKE.crop_template()
    plain = AlignmentTemplate(template.name, template.points, template.size)
    plain_spec, mapped_spec = (ModelInput.from_description(
        {"input_size": 150, "channel_order": "BGR", "mean": "0.1,0.2,0.3", "std": 1, "alignment": t.to_spec()}, "test")
        for t in (plain, template))
    assert DLIB_LIKE.crop_key() == mapped_spec.crop_key() != plain_spec.crop_key()
    assert DLIB_LIKE.crop_key() == ModelInput(150, "RGB", (0.5,) * 3, (0.5,) * 3, "dlib_150").crop_key()
    assert ModelInput().crop_key() != DLIB_LIKE.crop_key()
