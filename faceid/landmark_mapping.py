"""A fitted map from the detector's five landmarks to the points a model's own landmark model would find.

A network is trained on the crops of its own aligner. dlib's face recognition ResNet sees chips that dlib's
`shape_predictor_5_face_landmarks` placed (eye corners and the base of the nose) while faceid detects with MTCNN
(eye centres, nose tip, mouth corners). One mean template absorbs the average offset between the two point sets,
not how it changes as the head turns: on in-the-wild photos the crop drifts with yaw (docs/alignment.md).

A `LandmarkMapping` is a linear map, fitted by least squares on photos where both landmark sets are known, from
the five detector points in a template's crop frame to the model aligner's points in the same frame. Aligning
through it is two similarities: the detector's points onto the template (the usual alignment), then the predicted
points onto `target`, where the model's aligner puts its own points.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class LandmarkMapping:
    """predicted = weights @ points.ravel() + bias, for five (x, y) points in a crop frame; `target` (5, 2) is where
    the predicted points belong in that crop. Arrays are read-only float64."""

    weights: np.ndarray
    bias: np.ndarray
    target: np.ndarray

    def __post_init__(self):
        for name, shape in (("weights", (10, 10)), ("bias", (10,)), ("target", (5, 2))):
            value = np.array(getattr(self, name), dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"landmark mapping {name} must have shape {shape}, got {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError(f"landmark mapping {name} contains NaN or infinite values")
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    def predict(self, points: np.ndarray) -> np.ndarray:
        """The model aligner's five points (5, 2) predicted from the detector's five `points` (5, 2), both in the
        crop frame."""
        return (self.weights @ np.asarray(points, dtype=np.float64).ravel() + self.bias).reshape(5, 2)

    def scaled(self, ratio: float, shift_x: float) -> "LandmarkMapping":
        """The same map in a crop frame scaled by `ratio` and shifted by `shift_x` (as `AlignmentTemplate.scaled`):
        for p' = ratio * p + s, predicted' = weights @ p' + ratio * bias + s - weights @ s."""
        shift = np.tile([shift_x, 0.0], 5)
        return LandmarkMapping(self.weights, ratio * self.bias + shift - self.weights @ shift,
                               self.target * ratio + np.array([shift_x, 0.0]))

    def to_spec(self) -> dict:
        return {"weights": self.weights.tolist(), "bias": self.bias.tolist(), "target": self.target.tolist()}

    def __eq__(self, other):
        if not isinstance(other, LandmarkMapping):
            return NotImplemented
        return all(np.array_equal(getattr(self, name), getattr(other, name)) for name in ("weights", "bias", "target"))

    def __hash__(self):
        return hash((self.weights.tobytes(), self.bias.tobytes(), self.target.tobytes()))


def fit_landmark_mapping(detector_points: np.ndarray, aligner_points: np.ndarray, target: np.ndarray
                         ) -> LandmarkMapping:
    """Least-squares `LandmarkMapping` from `detector_points` (N, 5, 2) to `aligner_points` (N, 5, 2), both in the
    crop frame, with `target` the aligner's points in that crop. Needs N >= 11 faces (10 weights and a bias per
    output coordinate)."""
    source = np.asarray(detector_points, dtype=np.float64)
    goal = np.asarray(aligner_points, dtype=np.float64)
    if source.ndim != 3 or source.shape[1:] != (5, 2) or goal.shape != source.shape:
        raise ValueError(f"landmarks must be two (N, 5, 2) arrays, got {source.shape} and {goal.shape}")
    if len(source) < 11:
        raise ValueError(f"fitting a landmark mapping needs at least 11 faces, got {len(source)}")
    design = np.hstack([source.reshape(len(source), 10), np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, goal.reshape(len(goal), 10), rcond=None)
    return LandmarkMapping(solution[:10].T, solution[10], target)
