"""Five-point face alignment: a least-squares similarity transform onto a named template.

Landmarks are ordered left eye, right eye, nose tip, left mouth corner, right mouth corner, as
(x, y) pixel coordinates in the image that holds the face ("left" is the image's left).

Each embedding model was trained on a particular crop; an `AlignmentTemplate` describes that crop
as data: where the five landmarks land, in output pixels, and the output (height, width). Named
templates live in `TEMPLATES` (see docs/alignment.md); `alignment_template` resolves a name, a
template or a spec mapping such as one read from YAML: {points: [[x, y] x 5], size: [h, w]}.

A template may carry a `LandmarkMapping` (faceid.landmark_mapping): the detector's points, once on the template,
are mapped to where the model's own aligner would have put its points, and the crop is made from those. dlib_150
has one, fitted on celeba_wild (faceid.dlib_landmark_fit).
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from faceid.dlib_landmark_fit import DLIB_150_MAPPING
from faceid.landmark_mapping import LandmarkMapping

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# facenet-pytorch's InceptionResnetV1 input: MTCNN's `extract_face` crop (the detection box, grown by
# `margin` pixels of the output and resized to 160x160; facenet-pytorch's default margin is 0). That
# crop is an axis-aligned, slightly anisotropic box resize, so a 5-point similarity can only
# approximate it; these points are the mean of MTCNN's own landmarks mapped into that crop, over
# ORL s1-s20 and the first half of Caltech Faces_easy (tools/derive_dlib_template.py; residuals and
# held-out figures in docs/alignment.md).
FACENET_TEMPLATE_160 = np.array(
    [
        [46.1316, 63.5200],
        [120.9129, 64.0347],
        [83.2109, 96.3751],
        [50.2561, 122.5694],
        [115.1391, 122.9530],
    ],
    dtype=np.float64,
)

# dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1) input: the chip of
# dlib.get_face_chip(image, shape_predictor_5_face_landmarks(...), size=150, padding=0.25). Derived by
# tools/derive_dlib_template.py: on ORL s1-s20 + the first half of Caltech Faces_easy, MTCNN's five
# landmarks mapped into dlib's own chip (the image->chip similarity recovered from the chip details),
# averaged. Held-out agreement (chip embeddings, dlib's network) is in docs/alignment.md.
DLIB_TEMPLATE_150 = np.array(
    [
        [46.3936, 46.6233],
        [101.5936, 46.2767],
        [73.7657, 77.9624],
        [50.0642, 103.1837],
        [98.1583, 102.9285],
    ],
    dtype=np.float64,
)


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def _check_size(size, what: str) -> tuple[int, int]:
    """(height, width) from an int or a pair of ints, both positive; ValueError naming `what` otherwise."""
    if isinstance(size, bool):
        raise ValueError(f"{what} must be a positive int or [height, width], got {size!r}")
    if isinstance(size, (int, np.integer)):
        size = (size, size)
    try:
        values = list(size)
    except TypeError:
        raise ValueError(f"{what} must be a positive int or [height, width], got {size!r}") from None
    if len(values) != 2:
        raise ValueError(f"{what} must be a positive int or [height, width], got {len(values)} values: {size!r}")
    result = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise ValueError(f"{what} must hold numbers, got {size!r}")
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{what} must hold whole numbers, got {size!r}")
        if value <= 0:
            raise ValueError(f"{what} must be positive, got {size!r}")
        result.append(int(value))
    return result[0], result[1]


def _check_points(points, what: str) -> np.ndarray:
    try:
        array = np.array(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be 5 [x, y] number pairs, got {points!r}") from None
    if array.shape != (5, 2):
        raise ValueError(f"{what} must be 5 [x, y] pairs (shape (5, 2)), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values: {array.tolist()}")
    if ((array - array.mean(0)) ** 2).sum() <= 1e-9:
        raise ValueError(f"{what} are all at one point; no alignment can map onto them")
    return array


@dataclass(frozen=True, eq=False)
class AlignmentTemplate:
    """Where the 5 landmarks land in the output crop (`points`, (5, 2) x/y in output pixels) and the
    crop's `size` as (height, width). `points` is a read-only float64 array. With a `landmark_mapping`, the
    points only fix the frame in which the mapping predicts the model aligner's points; those are what land on
    the mapping's target."""

    name: str
    points: np.ndarray
    size: tuple[int, int]
    landmark_mapping: LandmarkMapping | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"template name must be a non-empty string, got {self.name!r}")
        points = _check_points(self.points, f"template {self.name!r} points").copy()
        points.flags.writeable = False
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "size", _check_size(self.size, f"template {self.name!r} size"))
        if self.landmark_mapping is not None and not isinstance(self.landmark_mapping, LandmarkMapping):
            raise ValueError(f"template {self.name!r} landmark_mapping must be a LandmarkMapping, "
                             f"got {type(self.landmark_mapping).__name__}")

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    def scaled(self, size: int | tuple[int, int]) -> "AlignmentTemplate":
        """The same crop at another output size: points scaled by the height ratio and centred
        horizontally (so ArcFace at (112, 96) is the SphereFace convention, x - 8)."""
        height, width = _check_size(size, "size")
        if (height, width) == self.size:
            return self
        ratio = height / self.height
        shift_x = (width - self.width * ratio) / 2.0
        points = self.points * ratio
        points[:, 0] += shift_x
        mapping = None if self.landmark_mapping is None else self.landmark_mapping.scaled(ratio, shift_x)
        return AlignmentTemplate(f"{self.name}@{height}x{width}", points, (height, width), mapping)

    def to_spec(self) -> dict:
        """A plain mapping (YAML/JSON-ready) that `alignment_template` turns back into this template."""
        spec = {"name": self.name, "points": self.points.tolist(), "size": list(self.size)}
        if self.landmark_mapping is not None:
            spec["landmark_mapping"] = self.landmark_mapping.to_spec()
        return spec

    def __eq__(self, other):
        if not isinstance(other, AlignmentTemplate):
            return NotImplemented
        return (self.name == other.name and self.size == other.size and np.array_equal(self.points, other.points)
                and self.landmark_mapping == other.landmark_mapping)

    def __hash__(self):
        return hash((self.name, self.size, self.points.tobytes(), self.landmark_mapping))

    def __repr__(self):
        return f"AlignmentTemplate(name={self.name!r}, size={self.size}, points={self.points.round(4).tolist()})"


TEMPLATES: dict[str, AlignmentTemplate] = {
    template.name: template
    for template in (
        AlignmentTemplate("arcface_112", ARCFACE_TEMPLATE_112, (112, 112)),
        AlignmentTemplate("facenet_160", FACENET_TEMPLATE_160, (160, 160)),
        AlignmentTemplate("dlib_150", DLIB_TEMPLATE_150, (150, 150), DLIB_150_MAPPING),
    )
}
"""Named templates: arcface_112 (ArcFace / insightface / SFace), facenet_160 (facenet-pytorch's
InceptionResnetV1 on MTCNN crops), dlib_150 (dlib's face recognition ResNet)."""

SPEC_KEYS = {"name", "points", "size", "landmark_mapping"}


def alignment_template(name_or_spec) -> AlignmentTemplate:
    """Resolve a template name ("dlib_150"), an `AlignmentTemplate`, or a spec mapping.

    A spec is {points: [[x, y] x 5], size: [height, width] or an int, name: optional, landmark_mapping: optional
    {weights: 10x10, bias: 10, target: 5x2}}, points in output pixels; a spec holding only `name` (and optionally
    `size`) names a registered template, rescaled when `size` differs. Raises ValueError saying what is wrong.
    """
    if isinstance(name_or_spec, AlignmentTemplate):
        return name_or_spec
    if isinstance(name_or_spec, str):
        if name_or_spec not in TEMPLATES:
            raise ValueError(f"unknown alignment template {name_or_spec!r}; known: {', '.join(sorted(TEMPLATES))}")
        return TEMPLATES[name_or_spec]
    if isinstance(name_or_spec, Mapping):
        spec = dict(name_or_spec)
        unknown = set(spec) - SPEC_KEYS
        if unknown:
            raise ValueError(
                f"alignment template spec has unknown keys {sorted(unknown)}; expected {sorted(SPEC_KEYS)}"
            )
        if "points" not in spec:
            if "name" not in spec:
                raise ValueError("alignment template spec needs points and size (or the name of a known template)")
            template = alignment_template(spec["name"])
            return template.scaled(spec["size"]) if "size" in spec else template
        if "size" not in spec:
            raise ValueError("alignment template spec has points but no size: give size: [height, width]")
        name = spec.get("name", "custom")
        return AlignmentTemplate(name if isinstance(name, str) and name else "custom", spec["points"], spec["size"],
                                 _mapping_from_spec(spec.get("landmark_mapping")))
    raise ValueError(
        f"alignment template must be a name ({', '.join(sorted(TEMPLATES))}), an AlignmentTemplate or a mapping "
        f"with points and size, got {type(name_or_spec).__name__}"
    )


def _mapping_from_spec(spec) -> LandmarkMapping | None:
    if spec is None:
        return None
    keys = {"weights", "bias", "target"}
    if not isinstance(spec, Mapping) or set(spec) != keys:
        raise ValueError(f"landmark_mapping must be a mapping with exactly {sorted(keys)}, got {spec!r}")
    arrays = {}
    for key in sorted(keys):
        try:
            arrays[key] = np.array(spec[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"landmark_mapping {key} must hold numbers, got {spec[key]!r}") from None
    return LandmarkMapping(**arrays)


def _is_size(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value))


def resolve_template(template) -> AlignmentTemplate:
    """`alignment_template`, plus the size form: an int or (height, width) means the ArcFace template
    scaled to that size, exactly as `template_for_size`."""
    if _is_size(template):
        return TEMPLATES["arcface_112"].scaled(template)
    return alignment_template(template)


def template_for_size(size: int | tuple[int, int] = 112) -> np.ndarray:
    """The ArcFace template for an output of `size` (an int for square, or (height, width)).

    The 112x112 template is scaled by height/112 and centred horizontally, so (112, 96) gives the
    SphereFace convention (x - 8) and 224 gives the template doubled.
    """
    height, width = _size_hw(size)
    ratio = height / 112.0
    template = ARCFACE_TEMPLATE_112 * ratio
    template[:, 0] += (width - 112.0 * ratio) / 2.0
    return template


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Umeyama's least-squares similarity (rotation, uniform scale, translation) mapping source to target.

    Returns the 2x3 matrix M with target ≈ M @ [x, y, 1].
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"landmarks must be two (N, 2) arrays with N >= 2, got {source.shape} and {target.shape}")
    if not (np.isfinite(source).all() and np.isfinite(target).all()):
        raise ValueError("landmarks contain NaN or infinite values")
    source_mean, target_mean = source.mean(0), target.mean(0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = (source_centred**2).sum() / len(source)
    if source_variance <= 1e-12:
        raise ValueError("landmarks are all at one point; no similarity transform exists")
    covariance = target_centred.T @ source_centred / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[1, 1] = -1
    rotation = u @ reflection @ vt
    scale = np.trace(np.diag(singular_values) @ reflection) / source_variance
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (N, 2) under a 2x3 affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of `outer` applied after `inner`."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])


def alignment_matrix(landmarks: np.ndarray, template) -> np.ndarray:
    """The 2x3 image-to-crop matrix `align_face` warps with: the similarity of `landmarks` onto the template's
    points, then, for a template with a landmark mapping, the similarity of the predicted aligner points onto the
    mapping's target."""
    resolved = resolve_template(template)
    matrix = estimate_similarity(landmarks, resolved.points)
    mapping = resolved.landmark_mapping
    if mapping is None:
        return matrix
    predicted = mapping.predict(apply_affine(matrix, landmarks))
    return compose_affine(estimate_similarity(predicted, mapping.target), matrix)


def align_face(image: np.ndarray, landmarks: np.ndarray, template="arcface_112") -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that its 5 `landmarks` land on `template`'s points.

    `template` is anything `alignment_template` resolves (a name such as "dlib_150", an
    `AlignmentTemplate`, a spec mapping) or an int or (height, width) size meaning the ArcFace
    template scaled to it (`template_for_size`).

    Returns (crop, matrix): the (height, width, channels) crop and the 2x3 matrix from image to crop
    coordinates (`alignment_matrix`). Pixels that fall outside the source image are filled by edge replication
    (`cv2.BORDER_REPLICATE`), which keeps hard black borders out of the embedding's input.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {landmarks.shape}")
    resolved = resolve_template(template)
    matrix = alignment_matrix(landmarks, resolved)
    crop = cv2.warpAffine(image, matrix, (resolved.width, resolved.height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix
