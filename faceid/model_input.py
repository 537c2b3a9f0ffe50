"""`ModelInput`: what an embedding model takes as input, and how an aligned face crop becomes it.

A model input is the crop the model was trained on (an alignment template of `faceid.alignment`),
the size it is resized to, the channel order and the per-channel mean/std. It is not face detection
or alignment (that is `faceid.preprocessing.FacePreprocessor`): it starts from an aligned crop.

It is described the same way wherever it is stored: as ONNX metadata, in a third-party model's YAML
and under a checkpoint's `preprocessing` key (`ModelInput.from_description` reads all three).
"""

import hashlib
import json
import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from faceid.alignment import AlignmentTemplate, alignment_template

DEFAULT_ALIGNMENT = "arcface_112"
MODEL_INPUT_KEYS = ("input_size", "channel_order", "mean", "std")  # required in a description; alignment is not
FINGERPRINT_NAME = "Preprocessing"  # the name `fingerprint_text` records: part of stored gallery fingerprints


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


def alignment_text(value, source: str) -> str:
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
class ModelInput:
    """How an aligned face becomes network input: the crop the model expects (`alignment`, a template of
    `faceid.alignment`: a name such as `arcface_112`, `dlib_150`, `facenet_160`, or a custom
    {points, size} spec stored as JSON), then resize to `input_size` and (pixel/255 − mean)/std per
    channel in `channel_order`."""

    input_size: int = 112
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    alignment: str = DEFAULT_ALIGNMENT

    @classmethod
    def from_description(cls, description: dict, source: str) -> "ModelInput":
        """From a mapping with MODEL_INPUT_KEYS (and optionally `alignment`): ONNX metadata, a
        third-party model's YAML, or a checkpoint's `preprocessing`. Errors name `source` and the key."""
        if not isinstance(description, dict):
            raise ValueError(f"{source}: a model input description must be a mapping, "
                             f"got {type(description).__name__}")
        missing = [k for k in MODEL_INPUT_KEYS if k not in description]
        if missing:
            raise ValueError(f"{source}: the model input description lacks {missing}; it needs "
                             f"{list(MODEL_INPUT_KEYS)} (and optionally alignment)")
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
        return cls(size, order, mean, std, alignment_text(description.get("alignment", DEFAULT_ALIGNMENT), source))

    def crop_template(self) -> AlignmentTemplate:
        """The template faces are aligned onto for this model: its alignment, scaled to `input_size`
        (so the crop needs no resize)."""
        return alignment_template(_alignment_spec(self.alignment)).scaled(self.input_size)

    def crop_key(self) -> str:
        """A short hash of the crop itself (the template's points, size and landmark mapping), for caches of
        embeddings: a named template whose geometry changes between releases must not reuse old vectors. Gallery
        fingerprints name the alignment only, so a gallery keeps accepting the model that made it."""
        spec = json.dumps(self.crop_template().to_spec(), sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, str]:
        """The description as strings (ONNX metadata); `from_description` reads it back."""
        return {"input_size": str(self.input_size), "channel_order": self.channel_order,
                "mean": ",".join(map(str, self.mean)), "std": ",".join(map(str, self.std)), "alignment": self.alignment}

    def fingerprint_text(self) -> str:
        """The text embedder fingerprints record for this input (galleries store it; `OnnxEmbedder` hashes
        it): `Preprocessing(input_size=112, channel_order='RGB', ...)`, every field's repr in field order.
        Its form is part of the gallery format and must not change, or existing galleries would refuse
        the very model that made them."""
        values = ", ".join(f"{field.name}={getattr(self, field.name)!r}" for field in fields(self))
        return f"{FINGERPRINT_NAME}({values})"

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
