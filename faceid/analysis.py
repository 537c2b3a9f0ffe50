"""`FaceAnalysis`: every face of an image in one call, with its box, landmarks, detector score, quality, aligned crop
and embedding (insightface's `FaceAnalysis.get`, deepface's `represent`).

    from faceid import FaceAnalysis
    analyser = FaceAnalysis()            # dlib_resnet_v1 (installed with faceid[pretrained]): nothing downloads
    for face in analyser.faces("group.jpg"):
        print(face.box, face.detector_score, face.quality, face.embedding.shape)

The model and the detector load once, on first use. An image is a path, encoded bytes, a PIL image or a numpy
array (H, W, 3) RGB uint8 (or greyscale, or RGBA). Faces come in the order of the subject rule (`faceid.detection`):
the photo's subject first. A face's quality is `faceid.face_quality.FaceQuality`: its size between the eyes, the
sharpness of its crop, its yaw and roll, and the detector's score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceid.data.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_rgb
from faceid.face_quality import FaceQuality, measure_quality
from faceid.zoo.catalog import DEFAULT_MODEL


@dataclass(frozen=True)
class Face:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in the image's pixels
    landmarks: np.ndarray  # (5, 2) eyes, nose, mouth corners
    detector_score: float
    quality: FaceQuality
    crop: np.ndarray  # the aligned crop the model embedded, RGB uint8
    embedding: np.ndarray  # unit vector

    def to_dict(self) -> dict:
        """JSON-ready: everything but the crop."""
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "detector_score": round(float(self.detector_score), 5), "quality": self.quality.to_dict(),
                "embedding": [float(v) for v in self.embedding]}


class FaceAnalysis:
    """Detect, align and embed with `model` (a zoo name, a checkpoint or an ONNX model) on `device`."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "auto", max_pixels: int | None = None):
        self.model, self.device = str(model), device
        self.max_pixels = max_pixels
        self._embedder = None
        self._preprocessor = None

    @property
    def embedder(self):
        if self._embedder is None:
            from faceid.export.embedder import load_embedder

            self._embedder = load_embedder(self.model, self.device)
        return self._embedder

    @property
    def preprocessor(self):
        if self._preprocessor is None:
            from faceid.preprocessing import FacePreprocessor

            self._preprocessor = FacePreprocessor(select="all", size=self.embedder.model_input.crop_template(),
                                                  device=self.device)
        return self._preprocessor

    def faces(self, image, name: str | None = None) -> list[Face]:
        """Every face of `image`, the subject first (`faceid.detection.subject_score`); [] when there is none."""
        from faceid.face_selection import subject_score

        rgb = load_rgb(image, name, self.max_pixels)
        aligned = sorted(self.preprocessor(rgb), key=lambda f: -subject_score(f.face, rgb.shape))
        if not aligned:
            return []
        embeddings = self.embedder.embed([face.crop for face in aligned])
        return [Face(face.face.box, face.face.landmarks, float(face.face.score),
                     measure_quality(face.face.landmarks, face.crop, face.face.score), face.crop, embedding)
                for face, embedding in zip(aligned, embeddings, strict=True)]

    def face(self, image, name: str | None = None) -> Face:
        """The subject of `image` (the first of `faces`); ValueError naming the image when it has none."""
        faces = self.faces(image, name)
        if not faces:
            raise ValueError(f"{image_name(image, name)}: no face found")
        return faces[0]


def image_name(image, name: str | None = None) -> str:
    if name:
        return name
    return str(image) if isinstance(image, (str, Path)) else f"the {type(image).__name__} image"


def load_rgb(image, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """A path, encoded bytes, a PIL image or an array -> RGB uint8; a ValueError naming the image when it is not one."""
    from faceid.detection import to_rgb_array

    label = image_name(image, name)
    try:
        if isinstance(image, (bytes, bytearray)):
            return decode_rgb(bytes(image), label, max_pixels or DEFAULT_MAX_PIXELS)
        if isinstance(image, (str, Path)) and not Path(image).is_file():
            raise FileNotFoundError(f"{label}: no such file" if not Path(image).is_dir()
                                    else f"{label} is a folder, not an image")
        return to_rgb_array(image)
    except ImageReadError as error:
        raise ValueError(f"{label}: {error.reason}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label}: not an image ({error})") from None

