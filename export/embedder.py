"""`OnnxEmbedder`: the onnxruntime embedder the gallery, evaluation and CLI use, and `load_embedder`,
which opens any model kind behind the one embedder interface of `faceid.embedder`.

faceid's own ONNX models describe their input (`faceid.model_input.ModelInput`) in their metadata. Third-party models
(insightface's `w600k_r50.onnx`, OpenCV's SFace...) need it stated: a small YAML

    input_size: 112
    channel_order: RGB        # or BGR
    mean: [0.5, 0.5, 0.5]     # in [0, 1] pixel units: input = (pixel / 255 - mean) / std
    std: [0.5, 0.5, 0.5]

or the same keys as keyword arguments. A missing or inconsistent description is an error.
"""

import difflib
import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import yaml

from faceid.arrays import l2_normalize
from faceid.embedder import Embedder, PixelEmbedder
from faceid.model_input import MODEL_INPUT_KEYS, ModelInput
from faceid.torch_embedder import TorchEmbedder
from faceid.zoo import is_model_name, known_models
from faceid.zoo import resolve as resolve_model


class OnnxEmbedder:
    """Batched onnxruntime inference returning L2-normalised float32 embeddings."""

    def __init__(self, path: str | Path, device: str = "auto", batch_size: int = 32, threads: int = 0,
                 preprocessing: ModelInput | dict | str | Path | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model {path} does not exist")
        try:
            proto = onnx.load(path, load_external_data=False)
            onnx.checker.check_model(proto)
        except Exception as error:
            raise ValueError(f"{path} is not a valid ONNX model: {error}") from None
        metadata = {p.key: p.value for p in proto.metadata_props}
        self.model_input = self._model_input(path, metadata, preprocessing)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise ValueError("device 'cuda' was asked for but onnxruntime has no CUDAExecutionProvider "
                             "(install the gpu extra: onnxruntime-gpu)")
        use_cuda = device in ("cuda", "auto") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input = self.session.get_inputs()[0]
        self._check_input(path)
        self.output_name = self.session.get_outputs()[0].name
        dim = self.session.get_outputs()[0].shape[-1]
        self.embedding_dim = int(metadata.get("embedding_dim", dim if isinstance(dim, int) else 0))
        self.batch_size, self.metadata = batch_size, metadata
        digest = hashlib.sha256(path.read_bytes())
        digest.update(self.model_input.fingerprint_text().encode())
        self.fingerprint = digest.hexdigest()[:16]

    @staticmethod
    def _model_input(path: Path, metadata: dict, given) -> ModelInput:
        if isinstance(given, ModelInput):
            return given
        if isinstance(given, (str, Path)):
            description = yaml.safe_load(Path(given).read_text())
            if not isinstance(description, dict):
                raise ValueError(f"{given}: a model input description must be a YAML mapping")
            return ModelInput.from_description(description, str(given))
        if isinstance(given, dict):
            return ModelInput.from_description(given, "preprocessing")
        if all(k in metadata for k in MODEL_INPUT_KEYS):
            return ModelInput.from_description(metadata, f"{path} metadata")
        raise ValueError(f"{path} carries no faceid preprocessing metadata; describe its input "
                         f"({', '.join(MODEL_INPUT_KEYS)}) in a YAML file (--preprocessing)")

    def _check_input(self, path: Path) -> None:
        shape = self.input.shape
        if len(shape) != 4:
            raise ValueError(f"{path}: expected a 4-d image input, got shape {shape}")
        size = self.model_input.input_size
        height, width = shape[2], shape[3]
        if shape[1] != 3 or any(isinstance(v, int) and v != size for v in (height, width)):
            raise ValueError(f"{path}: the model takes input {shape} (N, C, H, W) but the preprocessing says "
                             f"3 x {size} x {size}")

    def embed(self, crops) -> np.ndarray:
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = self.model_input.apply(crops[start:start + self.batch_size])
            outputs.append(self.session.run([self.output_name], {self.input.name: batch})[0].astype(np.float32))
        if not outputs:
            return np.zeros((0, self.embedding_dim), np.float32)
        embeddings = np.concatenate(outputs).reshape(len(crops), -1)
        return l2_normalize(embeddings, axis=1)


def load_embedder(model: str | Path, device: str = "auto", batch_size: int = 32, threads: int = 0,
                  preprocessing=None) -> Embedder:
    """Any model kind behind one interface: a model-zoo name (`dlib_resnet_v1`, `sface`...: see
    `faceid models list`; pulled into the cache on first use), `.onnx` (faceid or described
    third-party), a faceid checkpoint (`.pt`), `untrained:<backbone>[:<dim>]`, or `pixels`."""
    text = str(model)
    if is_model_name(text) and not Path(text).exists():
        path = resolve_model(text)
        if path.suffix == ".onnx":
            return OnnxEmbedder(path, device, batch_size, threads, preprocessing or path.with_suffix(".yaml"))
        return TorchEmbedder.from_checkpoint(path, device, batch_size)
    if text == "pixels":
        return PixelEmbedder()
    if text.startswith("untrained:"):
        parts = text.split(":")
        return TorchEmbedder.untrained(parts[1], int(parts[2]) if len(parts) > 2 else 128, device=device,
                                       batch_size=batch_size)
    if not Path(text).exists():
        raise FileNotFoundError(_no_such_model(text))
    if text.lower().endswith(".onnx"):
        return OnnxEmbedder(text, device, batch_size, threads, preprocessing)
    return TorchEmbedder.from_checkpoint(text, device, batch_size)


def _no_such_model(text: str) -> str:
    close = difflib.get_close_matches(text, [entry.name for entry in known_models()], n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    return (f"model {text!r} is neither a known model name nor an existing file.{hint} Known models: "
            f"{', '.join(entry.name for entry in known_models())} (`faceid models list`); a file is a faceid "
            "checkpoint (.pt) or an ONNX model (.onnx); or untrained:<backbone>, or pixels")
