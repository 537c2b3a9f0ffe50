"""Which face a photo stands for (`select_faces`), in numpy alone (no torch, so light modules can import it).

`subject` (the default) scores each face by its area minus twice the squared distance, in pixels, from its box's
centre to the photo's centre, the rule of insightface's RetinaFace and
SCRFD detectors (`area - 2 * offset²`): a centred subject wins over a bigger neighbour cut by the photo's edge, and a
face that fills the photo wins wherever it is. `largest`, `best` (detector score), `center` and `all` are explicit
choices. The chosen face is marked `ambiguous` when another face is nearly as good a subject: its subject score is
within `AMBIGUITY_MARGIN` of the chosen face's area below the chosen face's.
"""

from dataclasses import dataclass, replace

import numpy as np

SELECT_CHOICES = ("subject", "largest", "best", "center", "all")
DEFAULT_SELECT = "subject"
SELECT_HELP = ("which face of a photo to use: subject (large and central: area - 2 x squared offset from the "
               "centre), largest, best (detector score), center")
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


def subject_score(face: DetectedFace, image_shape: tuple[int, int]) -> float:
    """insightface's rule: the box's area minus twice its centre's squared distance from the image's centre."""
    offset = (face.box[:2] + face.box[2:]) / 2 - np.array([image_shape[1] / 2, image_shape[0] / 2])
    return face.area - 2.0 * float(offset @ offset)


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
    area of the chosen face's score (or above it, when another rule chose), else None."""
    others = [face for face in faces if face is not chosen]
    if not others:
        return None
    rival = max(others, key=lambda f: subject_score(f, image_shape))
    close = subject_score(rival, image_shape) >= subject_score(chosen, image_shape) - AMBIGUITY_MARGIN * chosen.area
    return rival.box if close else None


def rounded_box(box) -> list[float]:
    """A box as JSON-ready floats, to a tenth of a pixel."""
    return [round(float(value), 1) for value in box]
