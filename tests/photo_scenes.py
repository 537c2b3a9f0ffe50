"""Test photos in the style of in-the-wild benchmarks, made from real celeba_wild photos: a head cut from one photo
and pasted onto a canvas beside another person's, where the test needs it."""

from pathlib import Path

import cv2
import numpy as np

from faceid.data.images import read_rgb


def head(path: Path, face_width: int, detector) -> np.ndarray:
    """The head of the photo's subject (its face box grown 1.8 times), scaled so that the face box is `face_width`
    pixels wide; `detector` is a `FaceDetector(select="subject")`."""
    rgb = read_rgb(path)
    face = detector.detect(rgb)[0]
    x1, y1, x2, y2 = face.box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.8
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    crop = rgb[top:int(min(rgb.shape[0], cy + side / 2)), left:int(min(rgb.shape[1], cx + side / 2))]
    scale = face_width / (x2 - x1)
    return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)


def paste(canvas: np.ndarray, image: np.ndarray, centre_x: float, centre_y: float) -> None:
    """`image` centred at (centre_x, centre_y) on `canvas`, cut by the canvas's edges."""
    height, width = image.shape[:2]
    x0, y0 = round(centre_x - width / 2), round(centre_y - height / 2)
    ax, ay = max(0, x0), max(0, y0)
    bx, by = min(canvas.shape[1], x0 + width), min(canvas.shape[0], y0 + height)
    canvas[ay:by, ax:bx] = image[ay - y0:by - y0, ax - x0:bx - x0]


def canvas(height: int = 300, width: int = 320) -> np.ndarray:
    return np.random.default_rng(0).integers(90, 140, (height, width, 3)).astype(np.uint8)


def subject_beside_bigger_neighbour(subject: Path, neighbour: Path, detector) -> np.ndarray:
    """The subject centred (face 60 px wide) and a bigger neighbour (face 100 px wide) at the right edge, a third of
    its face cut off by the photo's edge: the case where `largest` embeds the wrong person."""
    photo = canvas(360, 480)
    paste(photo, head(neighbour, 100, detector), 480 - 50 + 33, 170)
    paste(photo, head(subject, 60, detector), 240, 180)
    return photo


def two_people_side_by_side(first: Path, second: Path, detector) -> np.ndarray:
    """Two heads of one size placed symmetrically about the centre: either could be the subject."""
    photo = canvas(240, 400)
    paste(photo, head(first, 70, detector), 120, 120)
    paste(photo, head(second, 70, detector), 280, 120)
    return photo
