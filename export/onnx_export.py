"""Exporting a trained backbone to ONNX, with its model input stored in the model.

The graph takes `input` (float32, N x 3 x S x S, dynamic batch) and returns `embedding` (raw,
un-normalised; every faceid embedder L2-normalises). `metadata_props` carry the model input
contract (input size, channel order, mean/std), the embedding size, the backbone and loss names,
the training configuration hash and the faceid version, so loading code needs nothing else.
"""

import contextlib
import functools
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

import faceid
from faceid.arrays import l2_normalize
from faceid.checkpoint import BackboneCheckpoint, read_backbone_checkpoint
from faceid.data.folder import IMAGE_SUFFIXES
from faceid.data.images import read_rgb
from faceid.data.synthetic import generate_dataset
from faceid.torch_embedder import TorchEmbedder

OPSET = 18
MODEL_FORMAT = "faceid-embedder-1"
PARITY_MIN_COSINE = 0.99999


@dataclass(frozen=True)
class Parity:
    max_abs_diff: float
    min_cosine: float
    images: int
    source: str

    def __str__(self) -> str:
        return (f"parity on {self.images} {self.source} faces: max |diff| {self.max_abs_diff:.2e}, "
                f"min cosine {self.min_cosine:.7f}")


def metadata_for(checkpoint: BackboneCheckpoint) -> dict[str, str]:
    """The `metadata_props` of an exported model: `OnnxEmbedder` reads its model input back from them."""
    return {"format": MODEL_FORMAT, **checkpoint.model_input.describe(), "output_normalized": "false",
            "embedding_dim": str(checkpoint.embedding_dim), "backbone": checkpoint.backbone,
            "loss": str(checkpoint.extra.get("loss", "unknown")),
            "config_hash": str(checkpoint.extra.get("config_hash", "unknown")),
            "faceid_version": faceid.__version__}


@functools.lru_cache(maxsize=4)
def sample_faces(folder: Path | None, count: int = 32) -> tuple[list[np.ndarray], str]:
    """Aligned crops for parity and calibration: from `folder` (any depth) or generated (cached, so the
    export, its int8 copy and their parity checks share one set)."""
    if folder is not None:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not paths:
            raise ValueError(f"{folder} holds no images to check parity or calibrate on")
        return [read_rgb(p) for p in paths], "real"
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        generate_dataset(scratch, identities=max(1, count // 4), images_per_identity=4, seed=123, progress=False)
        paths = sorted(Path(scratch, "aligned").rglob("*.png"))[:count]
        return [read_rgb(p) for p in paths], "synthetic"


def check_parity(torch_embedder: TorchEmbedder, onnx_path: Path, faces: list[np.ndarray], source: str) -> Parity:
    from faceid.export.embedder import OnnxEmbedder

    reference = torch_embedder.embed(faces)
    exported = OnnxEmbedder(onnx_path, device="cpu").embed(faces)
    raw_diff = float(np.abs(reference - exported).max())
    cosine = float((l2_normalize(reference) * l2_normalize(exported)).sum(1).min())
    return Parity(raw_diff, cosine, len(faces), source)


def export_onnx(checkpoint_path: str | Path, out: str | Path, parity_faces: Path | None = None,
                min_cosine: float = PARITY_MIN_COSINE) -> Parity:
    """Export the backbone of `checkpoint_path` to `out`; raises RuntimeError when parity fails."""
    out = Path(out)
    checkpoint = read_backbone_checkpoint(checkpoint_path)
    torch_embedder = TorchEmbedder.from_checkpoint(checkpoint, device="cpu")
    model = torch_embedder.model.eval()
    size = checkpoint.model_input.input_size
    example = torch.zeros(2, 3, size, size)
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates every stage
        program = torch.onnx.export(model, (example,), None, input_names=["input"], output_names=["embedding"],
                                    opset_version=OPSET, dynamo=True, external_data=False, optimize=True,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, metadata_for(checkpoint))
    onnx.checker.check_model(proto, full_check=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, out)
    faces, source = sample_faces(parity_faces)
    parity = check_parity(torch_embedder, out, faces, source)
    if parity.min_cosine < min_cosine:
        out.unlink()
        raise RuntimeError(f"ONNX export of {checkpoint_path} failed parity: {parity} (needs >= {min_cosine})")
    return parity


def quantize_int8(model_path: str | Path, out: str | Path, calibration: Path | None = None,
                  mode: str = "static") -> Path:
    """onnxruntime int8 quantisation: `static` (QDQ, per-channel, calibrated on aligned faces from
    `calibration` or generated ones) or `dynamic` (weights only). Metadata is carried over."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from faceid.export.embedder import OnnxEmbedder

    model_path, out = Path(model_path), Path(out)
    prepared = out.with_suffix(".prep.onnx")
    quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser warns once per folded 1-d weight, which is expected
    try:
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8)
        elif mode == "static":
            embedder = OnnxEmbedder(model_path, device="cpu")
            faces, _ = sample_faces(calibration, count=64)
            batches = [embedder.model_input.apply(faces[i:i + 8]) for i in range(0, len(faces), 8)]

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.items = iter([{"input": batch} for batch in batches])

                def get_next(self):
                    return next(self.items, None)

            quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        else:
            raise ValueError(f"int8 mode must be 'static' or 'dynamic', got {mode!r}")
    finally:
        root.setLevel(level)
        prepared.unlink(missing_ok=True)
    quantized = onnx.load(out)
    source = {p.key: p.value for p in onnx.load(model_path).metadata_props}
    onnx.helper.set_model_props(quantized, {**source, "quantization": f"int8-{mode}"})
    onnx.save(quantized, out)
    return out


def export_fp16(checkpoint_path: str | Path, out: str | Path) -> Path:
    """A float16 copy of the exported graph (inputs and outputs stay float32), for CUDA inference."""
    if not torch.cuda.is_available():
        raise ValueError("--fp16 export needs CUDA (float16 inference on onnxruntime's CPU provider is not faster)")
    checkpoint = read_backbone_checkpoint(checkpoint_path)
    torch_embedder = TorchEmbedder.from_checkpoint(checkpoint, device="cuda")
    size = checkpoint.model_input.input_size

    class HalfPrecision(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model.half()

        def forward(self, images):
            return self.model(images.half()).float()

    wrapper = HalfPrecision(torch_embedder.model).eval()
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        program = torch.onnx.export(wrapper, (torch.zeros(2, 3, size, size, device="cuda"),), None,
                                    input_names=["input"], output_names=["embedding"], opset_version=OPSET,
                                    dynamo=True, external_data=False, dynamic_shapes=({0: torch.export.Dim("batch")},))
    proto = program.model_proto
    metadata = {**metadata_for(checkpoint), "precision": "float16"}
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, out)
    return Path(out)
