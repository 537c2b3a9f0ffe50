"""The embedder interface every consumer of embeddings takes, and its PyTorch implementation.

An embedder maps aligned face crops, RGB uint8 arrays of shape (N, H, W, 3), to L2-normalised
float32 embeddings (N, d). It carries a `fingerprint` that changes whenever its outputs would
(weights, preprocessing), used to key caches and to refuse mixing incompatible embeddings.
The ONNX runtime embedder (`export`) implements the same interface.
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from faceid.alignment import AlignmentTemplate, alignment_template
from faceid.arrays import l2_normalize
from faceid.backbones import build_backbone
from faceid.device import resolve_device

CHECKPOINT_FORMAT = "faceid-backbone-1"
DEFAULT_ALIGNMENT = "arcface_112"
PREPROCESSING_KEYS = ("input_size", "channel_order", "mean", "std")  # required in a description; alignment is not


def _triple(value, key: str, source: str) -> tuple[float, float, float]:
    if isinstance(value, str):
        value = value.split(",")
    try:
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {key} needs 1 or 3 numbers, got {value!r}") from None
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{source}: {key} needs 1 or 3 finite numbers, got {value!r}")
    if key == "std" and min(values) <= 0:
        raise ValueError(f"{source}: std must be positive, got {values}")
    return tuple(values)


def _alignment_spec(text: str):
    """A stored alignment back to what `alignment_template` takes: a name, or the JSON spec's mapping."""
    return json.loads(text) if text.startswith("{") else text


def _alignment_text(value, source: str) -> str:
    """An alignment as stored: a template name, or a custom template {points, size} as canonical JSON.
    Checked here, so a bad name or spec fails when the model is loaded, naming `source`."""
    if isinstance(value, dict):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    elif isinstance(value, str) and value.strip():
        text = value.strip()
    else:
        raise ValueError(f"{source}: alignment must be a template name or a {{points, size}} mapping, got {value!r}")
    try:
        alignment_template(_alignment_spec(text))
    except (ValueError, json.JSONDecodeError) as error:
        raise ValueError(f"{source}: alignment: {error}") from None
    return text


@dataclass(frozen=True)
class Preprocessing:
    """How a face becomes network input: the crop the model expects (`alignment`, a template of
    `faceid.alignment`: a name such as `arcface_112`, `dlib_150`, `facenet_160`, or a custom
    {points, size} spec stored as JSON), then resize to `input_size` and (pixel/255 − mean)/std per
    channel in `channel_order`."""

    input_size: int = 112
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    alignment: str = DEFAULT_ALIGNMENT

    @classmethod
    def from_description(cls, description: dict, source: str) -> "Preprocessing":
        """From a mapping with PREPROCESSING_KEYS (and optionally `alignment`): ONNX metadata, a
        third-party model's YAML, or a checkpoint's `preprocessing`. Errors name `source` and the key."""
        if not isinstance(description, dict):
            raise ValueError(f"{source}: a preprocessing description must be a mapping, "
                             f"got {type(description).__name__}")
        missing = [k for k in PREPROCESSING_KEYS if k not in description]
        if missing:
            raise ValueError(f"{source}: the preprocessing description lacks {missing}; it needs "
                             f"{list(PREPROCESSING_KEYS)} (and optionally alignment)")
        order = str(description["channel_order"]).upper()
        if order not in ("RGB", "BGR"):
            raise ValueError(f"{source}: channel_order must be RGB or BGR, got {description['channel_order']!r}")
        try:
            size = int(description["input_size"])
        except (TypeError, ValueError):
            size = 0
        if size < 1:
            raise ValueError(f"{source}: input_size must be a positive integer, got {description['input_size']!r}")
        mean, std = _triple(description["mean"], "mean", source), _triple(description["std"], "std", source)
        return cls(size, order, mean, std, _alignment_text(description.get("alignment", DEFAULT_ALIGNMENT), source))

    def crop_template(self) -> AlignmentTemplate:
        """The template faces are aligned onto for this model: its alignment, scaled to `input_size`
        (so the crop needs no resize)."""
        return alignment_template(_alignment_spec(self.alignment)).scaled(self.input_size)

    def describe(self) -> dict[str, str]:
        """The description as strings (ONNX metadata); `from_description` reads it back."""
        return {"input_size": str(self.input_size), "channel_order": self.channel_order,
                "mean": ",".join(map(str, self.mean)), "std": ",".join(map(str, self.std)), "alignment": self.alignment}

    def apply(self, crops) -> np.ndarray:
        """An (N, H, W, 3) RGB uint8 array, or a list of (H, W, 3) crops of any size -> (N, 3, S, S) float32."""
        size = (self.input_size, self.input_size)
        resized = []
        for index, crop in enumerate(crops):
            crop = np.asarray(crop)
            if crop.ndim != 3 or crop.shape[-1] != 3:
                raise ValueError(f"crop {index} must be an (H, W, 3) RGB array, got shape {crop.shape}")
            resized.append(crop if crop.shape[:2] == size else cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
        crops = np.stack(resized) if resized else np.zeros((0, *size, 3), np.uint8)
        if self.channel_order == "BGR":
            crops = crops[..., ::-1]
        scaled = (crops.astype(np.float32) / 255.0 - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


class Embedder(Protocol):
    embedding_dim: int
    fingerprint: str
    preprocessing: Preprocessing

    def embed(self, crops) -> np.ndarray: ...


def save_backbone_checkpoint(path: str | Path, model: torch.nn.Module, backbone: str, embedding_dim: int,
                             input_size: int = 112, extra: dict | None = None) -> None:
    """Write a backbone checkpoint that `TorchEmbedder.from_checkpoint` reads back."""
    torch.save({"format": CHECKPOINT_FORMAT, "backbone": backbone, "embedding_dim": embedding_dim,
                "input_size": input_size, "state_dict": model.state_dict(), **(extra or {})}, path)


def checkpoint_preprocessing(checkpoint: dict, source) -> Preprocessing:
    """The preprocessing a checkpoint records (pretrained conversions carry their own mean/std and
    alignment), or faceid's default at the checkpoint's input size."""
    alignment = checkpoint.get("alignment", DEFAULT_ALIGNMENT)
    recorded = checkpoint.get("preprocessing")
    if recorded is None:
        return Preprocessing(input_size=checkpoint["input_size"], alignment=_alignment_text(alignment, str(source)))
    return Preprocessing.from_description({"alignment": alignment, **recorded}, f"{source} preprocessing")


class TorchEmbedder:
    """An embedder over a PyTorch backbone (eval mode, no gradients), batched."""

    def __init__(self, model: torch.nn.Module, name: str, embedding_dim: int, preprocessing: Preprocessing,
                 device: str | torch.device = "auto", batch_size: int = 64, identity: str = ""):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name, self.embedding_dim, self.preprocessing = name, embedding_dim, preprocessing
        self.batch_size, self.identity = batch_size, identity
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A hash of the name, size, preprocessing and weights, computed on first use from the weights
        of that moment (so wrapping a live model, as validation during training does, hashes nothing)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps([self.name, self.embedding_dim, asdict(self.preprocessing),
                                                self.identity]).encode())
            for tensor in self.model.state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", batch_size: int = 64) -> "TorchEmbedder":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from None
        if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a faceid backbone checkpoint (format {CHECKPOINT_FORMAT})")
        options = checkpoint.get("backbone_options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"{path}: backbone_options must be a mapping, got {type(options).__name__}")
        model = build_backbone(checkpoint["backbone"], checkpoint["embedding_dim"], checkpoint["input_size"], **options)
        model.load_state_dict(checkpoint["state_dict"])
        preprocessing = checkpoint_preprocessing(checkpoint, path)
        return cls(model, checkpoint["backbone"], checkpoint["embedding_dim"], preprocessing, device, batch_size)

    @classmethod
    def untrained(cls, backbone: str, embedding_dim: int = 128, input_size: int = 112, seed: int = 0,
                  device: str = "auto", batch_size: int = 64) -> "TorchEmbedder":
        """A randomly initialised backbone (seeded): the floor any trained model must beat."""
        torch.manual_seed(seed)
        model = build_backbone(backbone, embedding_dim, input_size)
        return cls(model, backbone, embedding_dim, Preprocessing(input_size=input_size), device, batch_size,
                   identity=f"untrained-seed{seed}")

    @torch.no_grad()
    def embed(self, crops) -> np.ndarray:
        """Crops (an (N, H, W, 3) RGB array or a list of arrays) -> (N, d) unit float32 embeddings."""
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(self.preprocessing.apply(crops[start:start + self.batch_size])).to(self.device)
            outputs.append(torch.nn.functional.normalize(self.model(batch).float(), dim=1).cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, self.embedding_dim), np.float32)


class PixelEmbedder:
    """The raw-pixel baseline: the preprocessed crop, flattened and centred per image."""

    def __init__(self, input_size: int = 112):
        self.preprocessing = Preprocessing(input_size=input_size)
        self.embedding_dim = 3 * input_size * input_size
        self.fingerprint = f"pixels-{input_size}"

    def embed(self, crops) -> np.ndarray:
        flat = self.preprocessing.apply(crops).reshape(len(crops), -1)
        flat -= flat.mean(1, keepdims=True)
        return l2_normalize(flat, axis=1)
