"""Drawing whole-photo identification onto the photo: each face's box with its name and score,
known faces in green and unknown ones in red, written atomically (`faceid identify --annotate`)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from faceid.files import atomic_write
from faceid.gallery.photos import FaceMatch

KNOWN_COLOUR = (40, 200, 40)  # RGB
UNKNOWN_COLOUR = (230, 40, 40)


def draw_matches(rgb: np.ndarray, matches: list[FaceMatch]) -> np.ndarray:
    """A copy of `rgb` with every match's box and a label `name score` above it."""
    canvas = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    thickness = max(1, round(max(canvas.shape[:2]) / 400))
    font_scale = max(0.4, max(canvas.shape[:2]) / 1600)
    for match in matches:
        colour = KNOWN_COLOUR if match.known else UNKNOWN_COLOUR
        x1, y1, x2, y2 = (int(round(float(v))) for v in match.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        label = match.identity if match.best_score is None else f"{match.identity} {match.best_score:.2f}"
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        pad = 2 * thickness
        top = max(0, y1 - height - baseline - pad)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2 * pad, top + height + baseline + pad), colour, cv2.FILLED)
        cv2.putText(canvas, label, (x1 + pad, top + height + pad // 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, cv2.LINE_AA)
    return canvas


def write_annotated(path: str | Path, rgb: np.ndarray, matches: list[FaceMatch]) -> Path:
    """Draw `matches` on `rgb` and write it to `path` (format from its suffix), atomically."""
    path = Path(path)
    with atomic_write(path) as temporary:
        try:
            written = cv2.imwrite(str(temporary), draw_matches(rgb, matches)[..., ::-1])
        except cv2.error as error:
            raise ValueError(f"{path}: cannot write the annotated image ({error.msg.strip()})") from None
        if not written:
            raise ValueError(f"{path}: cannot write the annotated image (unknown image format {path.suffix!r})")
    return path
