"""The one preprocessing every stage uses: detect, select, align. Training data preparation,
enrollment and queries all go through `FacePreprocessor`, so they can never disagree."""

import copy
from dataclasses import dataclass

import numpy as np

from faceid.alignment import align_face
from faceid.detection import SELECT_CHOICES, DetectedFace, FaceDetector, to_rgb_array


@dataclass(frozen=True)
class AlignedFace:
    crop: np.ndarray  # (size, size, 3) RGB uint8
    matrix: np.ndarray  # 2x3, image -> crop
    face: DetectedFace


class FacePreprocessor:
    """`size` is the crop: an alignment template (name, spec or `AlignmentTemplate`, e.g. an embedder's
    `preprocessing.crop_template()`), or an int / (height, width) for the ArcFace template at that size."""

    def __init__(self, detector: FaceDetector | None = None, size=112,
                 select: str = "largest", **detector_options):
        self.detector = detector or FaceDetector(select=select, **detector_options)
        self.detector.select = select
        self.size = size

    def align(self, rgb: np.ndarray, faces: list[DetectedFace]) -> list[AlignedFace]:
        return [AlignedFace(*align_face(rgb, face.landmarks, self.size), face) for face in faces]

    def __call__(self, image, bgr: bool = False) -> list[AlignedFace]:
        """Aligned crops of the selected face(s) of one image ([] when no face is found)."""
        return self.many([to_rgb_array(image, bgr)])[0]

    def many(self, images: list[np.ndarray]) -> list[list[AlignedFace]]:
        """Aligned crops of the selected face(s) of each RGB array; detection runs in batches."""
        return [self.align(rgb, faces) for rgb, faces in zip(images, self.detector.detect_arrays(images), strict=True)]

    def selecting(self, select: str) -> "FacePreprocessor":
        """This preprocessor keeping `select` faces per image; it shares the detector's network, and
        this one is unchanged (safe while other threads use it)."""
        if select not in SELECT_CHOICES:
            raise ValueError(f"select must be one of {SELECT_CHOICES}, got {select!r}")
        if select == self.detector.select:
            return self
        selecting = copy.copy(self)
        selecting.detector = copy.copy(self.detector)
        selecting.detector.select = select
        return selecting
