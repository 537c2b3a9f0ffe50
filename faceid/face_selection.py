"""Which face a photo stands for (`select_faces`), in numpy alone (no torch, so light modules can import it).

`subject` (the default) scores each face by the area of its box inside the photo minus `SUBJECT_OFFSET_WEIGHT` times
the squared distance, in pixels, from that part's centre to the photo's centre: the form of insightface's RetinaFace
and SCRFD detectors (`area - 2 * offset²`), with a weight measured on celeba_wild. A centred subject wins over a
bigger neighbour cut by the photo's edge (MTCNN's box of a cut face reaches past the edge: only the part inside
counts), and a face that fills the photo wins wherever it is. insightface's weight 2 lets a small face near the
centre beat a large subject beside it: of celeba_wild's 104 photos with several faces whose subject is known (the
face closest to the mean of the person's one-face photos), weight 2 picks the wrong face in 11, `largest` in 2,
weight 0.25 in 1 (docs/models.md, "Which face"). `largest`, `best` (detector score), `center` and `all` are explicit
choices. The chosen face is marked `ambiguous` when another face is nearly as good a subject: its subject score is
within `AMBIGUITY_MARGIN` of the chosen face's visible area (the part inside the photo) below the chosen face's.
"""

from dataclasses import dataclass, replace

import numpy as np

SELECT_CHOICES = ("subject", "largest", "best", "center", "all")
DEFAULT_SELECT = "subject"
SUBJECT_OFFSET_WEIGHT = 0.25
SELECT_HELP = (f"which face of a photo to use: subject (large and central: area - {SUBJECT_OFFSET_WEIGHT:g} x squared "
               "offset from the centre), largest, best (detector score), center")
AMBIGUITY_MARGIN = 0.5  # a rival within half the chosen face's area, in subject score, makes the choice ambiguous


@dataclass(frozen=True)
class DetectedFace:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in the original image's pixels
    score: float
    landmarks: np.ndarray  # (5, 2)
    rival: np.ndarray | None = None  # the box of a face nearly as good a subject, when the choice is ambiguous

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def ambiguous(self) -> bool:
        return self.rival is not None


def check_select(select: str) -> str:
    if select not in SELECT_CHOICES:
        raise ValueError(f"select must be one of {', '.join(SELECT_CHOICES)}, got {select!r}")
    return select


def _visible_box(face: DetectedFace, image_shape: tuple[int, int]) -> tuple[float, float, float, float]:
    height, width = image_shape[:2]
    x1, y1, x2, y2 = (float(v) for v in np.clip(face.box, 0, [width, height, width, height]))
    return x1, y1, x2, y2


def visible_area(face: DetectedFace, image_shape: tuple[int, int]) -> float:
    """The area of the part of the face's box inside the image."""
    x1, y1, x2, y2 = _visible_box(face, image_shape)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(a, b) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes; 0 when both are empty."""
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def subject_score(face: DetectedFace, image_shape: tuple[int, int]) -> float:
    """The area of the box inside the image minus SUBJECT_OFFSET_WEIGHT x the squared distance from that part's centre
    to the image's centre."""
    height, width = image_shape[:2]
    x1, y1, x2, y2 = _visible_box(face, image_shape)
    offset_x, offset_y = (x1 + x2 - width) / 2, (y1 + y2 - height) / 2
    return visible_area(face, image_shape) - SUBJECT_OFFSET_WEIGHT * (offset_x ** 2 + offset_y ** 2)


def select_faces(faces: list[DetectedFace], select: str, image_shape: tuple[int, int]) -> list[DetectedFace]:
    """Keep every face (`all`), or the one face the rule `select` picks, marked with a rival when it is ambiguous."""
    check_select(select)
    if select == "all" or not faces:
        return faces
    centre = np.array([image_shape[1] / 2, image_shape[0] / 2])
    rules = {"subject": lambda f: subject_score(f, image_shape), "largest": lambda f: f.area,
             "best": lambda f: f.score,
             "center": lambda f: -float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre))}
    chosen = max(faces, key=rules[select])
    return [replace(chosen, rival=rival_of(chosen, faces, image_shape))]


def rival_of(chosen: DetectedFace, faces: list[DetectedFace], image_shape: tuple[int, int]) -> np.ndarray | None:
    """The box of the best other subject when its subject score is within AMBIGUITY_MARGIN x the chosen face's
    visible area (the part inside the photo, as the score counts it) of the chosen face's score (or above it, when
    another rule chose), else None."""
    others = [face for face in faces if face is not chosen]
    if not others:
        return None
    rival = max(others, key=lambda f: subject_score(f, image_shape))
    margin = AMBIGUITY_MARGIN * visible_area(chosen, image_shape)
    close = subject_score(rival, image_shape) >= subject_score(chosen, image_shape) - margin
    return rival.box if close else None


def rounded_box(box) -> list[float]:
    """A box as JSON-ready floats, to a tenth of a pixel."""
    return [round(float(value), 1) for value in box]
