"""How usable a detected face is as a template: its size, sharpness, pose and the detector's confidence, and the
enrolment gate that turns those measures into a yes or a reason.

- `interocular`: pixels between the two eye landmarks in the photo (a face's resolution);
- `sharpness`: the variance of the 4-neighbour Laplacian of the aligned crop's grey levels (0-255); the crop has the
  model's fixed size, so the figure compares faces of any size (an upscaled tiny face is soft too);
- `yaw`: degrees, from the nose's offset along the eye line from the eyes' midpoint, against half the
  interocular distance: atan(offset / (NOSE_DEPTH x half interocular)); about 0 frontal, growing towards a profile;
- `roll`: degrees the eye line turns from horizontal (alignment undoes it; reported, not gated);
- `detector_score`: MTCNN's probability.

`QualityGate`'s defaults were measured on celeba_wild and the studio sets (docs/models.md, "Enrolment quality"): of
celeba_wild's 3,825 photos with a face, min_interocular rejects 22 (0.6%), min_sharpness 9 (0.2%), max_yaw 16 (0.4%),
min_detector_score 6 (0.2%); none of ORL's, Yale's or Essex's (faces94, grimace) 1,215 photos fails any check.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

NOSE_DEPTH = 0.8  # the nose tip's depth in front of the eyes, in half interocular distances (a typical adult face)


@dataclass(frozen=True)
class FaceQuality:
    interocular: float
    sharpness: float
    yaw: float
    roll: float
    detector_score: float

    def to_dict(self) -> dict:
        return {name: round(float(value), 3) for name, value in asdict(self).items()}


def sharpness(crop: np.ndarray) -> float:
    """The variance of the 4-neighbour Laplacian of the crop's grey levels (0-255): the usual blur measure."""
    grey = np.asarray(crop, np.float64)
    if grey.ndim == 3:
        grey = grey[..., :3] @ np.array([0.299, 0.587, 0.114])
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])
    return float(laplacian.var())


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(interocular pixels, yaw degrees, roll degrees) from the five landmarks (eyes, nose, mouth corners)."""
    landmarks = np.asarray(landmarks, np.float64)
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_line = right_eye - left_eye
    interocular = float(np.linalg.norm(eye_line))
    if interocular < 1e-6:
        return 0.0, 90.0, 0.0
    along = float((nose - (left_eye + right_eye) / 2) @ eye_line) / interocular
    yaw = math.degrees(math.atan(along / (NOSE_DEPTH * interocular / 2)))
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    return interocular, yaw, roll


def measure_quality(landmarks: np.ndarray, crop: np.ndarray, detector_score: float) -> FaceQuality:
    interocular, yaw, roll = pose(landmarks)
    return FaceQuality(interocular, sharpness(crop), yaw, roll, float(detector_score))


@dataclass(frozen=True)
class QualityGate:
    """The enrolment checks; `problems` names each one a face fails (empty: it may be enrolled)."""

    min_interocular: float = 10.0
    min_sharpness: float = 5.0
    max_yaw: float = 60.0
    min_detector_score: float = 0.95

    def problems(self, quality: FaceQuality) -> list[str]:
        checks = [
            (quality.interocular < self.min_interocular,
             f"face too small: {quality.interocular:.0f} px between the eyes (at least {self.min_interocular:g})"),
            (quality.sharpness < self.min_sharpness,
             f"face too blurred: sharpness {quality.sharpness:.1f} (at least {self.min_sharpness:g})"),
            (abs(quality.yaw) > self.max_yaw,
             f"face turned too far: yaw {quality.yaw:+.0f} degrees (at most {self.max_yaw:g})"),
            (quality.detector_score < self.min_detector_score,
             f"face uncertain: detector score {quality.detector_score:.3f} (at least {self.min_detector_score:g})"),
        ]
        return [message for failed, message in checks if failed]
