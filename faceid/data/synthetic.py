"""Deterministic procedural faces with identity labels and five landmarks, for demos and tests.

An identity is a fixed random draw of face shape, skin tone, eye/brow/nose/mouth geometry and
colour, and hair. Every image of an identity adds nuisance: expression, small yaw (an asymmetric
horizontal squeeze), in-plane rotation, scale, translation, background, an illumination gradient,
a colour cast, blur, noise and sometimes an occluding patch. All ranges overlap between identities,
so no single colour or size gives an identity away.

Two outputs per image: `raw`, the face placed in a larger canvas with its five landmarks (left eye,
right eye, nose tip, left and right mouth corner) in `landmarks.csv`, and `aligned`, the crop warped
onto the ArcFace template by `faceid.alignment.align_face`.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from faceid.alignment import align_face

FRAME = 224  # side of the face frame, in which faces are drawn (ArcFace template coordinates x 2)
CENTRE_X = FRAME / 2
LANDMARK_COLUMNS = ["left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y",
                    "mouth_left_x", "mouth_left_y", "mouth_right_x", "mouth_right_y"]


@dataclass(frozen=True)
class FaceIdentity:
    """The fixed appearance of one synthetic person (face-frame pixel units)."""

    face_half_width: float
    face_half_height: float
    face_centre_y: float
    skin: tuple[float, float, float]
    eye_half_distance: float
    eye_y: float
    eye_half_width: float
    eye_half_height: float
    iris: tuple[float, float, float]
    brow_gap: float
    brow_thickness: float
    brow_slant: float
    brow_half_length: float
    nose_y: float
    nose_half_width: float
    mouth_y: float
    mouth_half_width: float
    lip_thickness: float
    lip: tuple[float, float, float]
    smile: float
    hair: tuple[float, float, float]
    hair_style: int  # 0 short, 1 long, 2 receding
    hairline_y: float
    beard: float  # 0 none, else opacity of a beard shadow
    glasses: bool


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one identity; every attribute comes from a continuous range shared by all identities."""
    tone = rng.uniform(90, 235)
    skin = (tone * rng.uniform(0.55, 0.8), tone * rng.uniform(0.7, 0.9), tone)  # BGR
    hair_tone = rng.uniform(15, 200)
    hair = (hair_tone * rng.uniform(0.4, 0.9), hair_tone * rng.uniform(0.6, 1.0), hair_tone)
    return FaceIdentity(
        face_half_width=rng.uniform(58, 78),
        face_half_height=rng.uniform(80, 100),
        face_centre_y=rng.uniform(124, 136),
        skin=skin,
        eye_half_distance=rng.uniform(30, 40),
        eye_y=rng.uniform(96, 110),
        eye_half_width=rng.uniform(9, 15),
        eye_half_height=rng.uniform(4, 8),
        iris=tuple(rng.uniform(20, 160, size=3)),
        brow_gap=rng.uniform(12, 24),
        brow_thickness=rng.uniform(3, 9),
        brow_slant=rng.uniform(-0.35, 0.35),
        brow_half_length=rng.uniform(11, 19),
        nose_y=rng.uniform(136, 152),
        nose_half_width=rng.uniform(8, 16),
        mouth_y=rng.uniform(176, 192),
        mouth_half_width=rng.uniform(20, 34),
        lip_thickness=rng.uniform(3, 10),
        lip=(rng.uniform(40, 120), rng.uniform(40, 110), rng.uniform(120, 220)),
        smile=rng.uniform(-6, 8),
        hair=hair,
        hair_style=int(rng.integers(0, 3)),
        hairline_y=rng.uniform(40, 70),
        beard=float(rng.uniform(0.3, 0.7)) if rng.random() < 0.3 else 0.0,
        glasses=bool(rng.random() < 0.2),
    )


def _ellipse(canvas, centre, axes, colour, angle=0.0, thickness=-1):
    cv2.ellipse(canvas, (int(round(centre[0] * 4)), int(round(centre[1] * 4))),
                (max(1, int(round(axes[0] * 4))), max(1, int(round(axes[1] * 4)))),
                angle, 0, 360, colour, thickness, cv2.LINE_AA, shift=2)


def _polyline(canvas, points, colour, thickness, closed=False):
    pts = np.round(np.asarray(points) * 4).astype(np.int32)
    cv2.polylines(canvas, [pts], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, shift=2)


def draw_face(identity: FaceIdentity, rng: np.random.Generator,
              yaw: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one expression of `identity` in the face frame.

    Returns (image BGR uint8, alpha float32 in [0, 1], landmarks (5, 2)). `yaw` shifts the nose and
    mouth sideways; the squeeze itself is applied by the caller.
    """
    image = np.zeros((FRAME, FRAME, 3), np.uint8)
    alpha = np.zeros((FRAME, FRAME), np.uint8)
    ident = identity
    cx, cy = CENTRE_X, ident.face_centre_y
    hair = tuple(float(c) * rng.uniform(0.9, 1.1) for c in ident.hair)
    shift = yaw * 14.0

    if ident.hair_style == 1:  # long hair behind the head
        _ellipse(image, (cx, cy + 10), (ident.face_half_width + 16, ident.face_half_height + 18), hair)
        _ellipse(alpha, (cx, cy + 10), (ident.face_half_width + 16, ident.face_half_height + 18), 255)
    else:
        _ellipse(image, (cx, cy - 12), (ident.face_half_width + 6, ident.face_half_height + 4), hair)
        _ellipse(alpha, (cx, cy - 12), (ident.face_half_width + 6, ident.face_half_height + 4), 255)
    for side in (-1, 1):  # ears
        _ellipse(image, (cx + side * (ident.face_half_width - 2), ident.eye_y + 22), (10, 20), ident.skin)
        _ellipse(alpha, (cx + side * (ident.face_half_width - 2), ident.eye_y + 22), (10, 20), 255)
    face_mask = np.zeros((FRAME, FRAME), np.uint8)
    _ellipse(face_mask, (cx, cy), (ident.face_half_width, ident.face_half_height), 255)
    _ellipse(alpha, (cx, cy), (ident.face_half_width, ident.face_half_height), 255)
    inside = face_mask > 127
    image[inside] = np.array(ident.skin, np.uint8)

    ys, xs = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32)
    hairline = ident.hairline_y + (0.012 if ident.hair_style != 2 else 0.03) * (xs - cx) ** 2
    fringe = inside & (ys < hairline)
    image[fringe] = np.array(hair, np.uint8)
    if ident.beard > 0:
        beard = inside & (ys > ident.mouth_y - 14)
        image[beard] = (image[beard] * (1 - ident.beard) + np.array(hair) * ident.beard).astype(np.uint8)

    openness = rng.uniform(0.45, 1.1)
    eyes = []
    for side in (-1, 1):
        ex, ey = cx + side * ident.eye_half_distance + shift * 0.4, ident.eye_y
        eyes.append((ex, ey))
        _ellipse(image, (ex, ey), (ident.eye_half_width, ident.eye_half_height * openness), (235, 235, 235))
        _ellipse(image, (ex, ey), (ident.eye_half_height * 0.9, ident.eye_half_height * 0.9 * openness), ident.iris)
        _ellipse(image, (ex, ey), (ident.eye_half_height * 0.35, ident.eye_half_height * 0.35 * openness), (10, 10, 10))
        brow_y = ey - ident.brow_gap
        inner, outer = ex - side * ident.brow_half_length, ex + side * ident.brow_half_length
        _polyline(image, [(inner, brow_y + ident.brow_slant * 10), (ex, brow_y - 3),
                          (outer, brow_y - ident.brow_slant * 10)], hair, ident.brow_thickness)
        if ident.glasses:
            _ellipse(image, (ex, ey), (ident.eye_half_width + 7, ident.eye_half_width + 2), (30, 30, 30), thickness=2)
    if ident.glasses:
        _polyline(image, [(eyes[0][0] + ident.eye_half_width + 7, ident.eye_y),
                          (eyes[1][0] - ident.eye_half_width - 7, ident.eye_y)], (30, 30, 30), 2)

    nose = (cx + shift, ident.nose_y)
    shadow = tuple(c * 0.7 for c in ident.skin)
    _polyline(image, [(cx + shift * 0.5, ident.eye_y + 4), (nose[0] - 2, nose[1] - 6), nose], shadow, 3)
    for side in (-1, 1):
        _ellipse(image, (nose[0] + side * ident.nose_half_width * 0.6, nose[1] + 2),
                 (ident.nose_half_width * 0.35, 3), (40, 40, 60))

    smile = ident.smile + rng.normal(0, 3)
    mouth_open = max(0.0, rng.normal(1, 3))
    mouth_cx = cx + shift * 0.8
    left = (mouth_cx - ident.mouth_half_width, ident.mouth_y - smile * 0.5)
    right = (mouth_cx + ident.mouth_half_width, ident.mouth_y - smile * 0.5)
    middle_y = ident.mouth_y + smile * 0.5
    upper = [left, (mouth_cx, middle_y - ident.lip_thickness - mouth_open), right]
    lower = [right, (mouth_cx, middle_y + ident.lip_thickness + mouth_open), left]
    lips = np.round(np.array(upper + lower) * 4).astype(np.int32)
    cv2.fillPoly(image, [lips], ident.lip, cv2.LINE_AA, shift=2)
    _polyline(image, [left, (mouth_cx, middle_y), right], (30, 20, 60), 1.5 + mouth_open)

    landmarks = np.array([eyes[0], eyes[1], nose, left, right], np.float64)
    return image, alpha.astype(np.float32) / 255.0, landmarks


def _squeeze_maps(k: float) -> tuple[np.ndarray, np.ndarray, callable]:
    """Remap tables for an asymmetric horizontal squeeze about the frame centre (a cheap yaw)."""
    left_scale, right_scale = 1.0 - k, 1.0 + 0.4 * k

    def forward(x):
        x = np.asarray(x, np.float64)
        return np.where(x < CENTRE_X, CENTRE_X + (x - CENTRE_X) * left_scale, CENTRE_X + (x - CENTRE_X) * right_scale)

    ys, xs = np.mgrid[0:FRAME, 0:FRAME].astype(np.float32)
    source_x = np.where(xs < CENTRE_X, CENTRE_X + (xs - CENTRE_X) / left_scale,
                        CENTRE_X + (xs - CENTRE_X) / right_scale)
    return source_x.astype(np.float32), ys, forward


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    corners = rng.uniform(0, 255, size=(2, 2, 3)).astype(np.float32)
    background = cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)
    blobs = rng.uniform(-60, 60, size=(6, 6, 3)).astype(np.float32)
    background += cv2.resize(blobs, (size, size), interpolation=cv2.INTER_CUBIC)
    return background


def render_raw(identity: FaceIdentity, rng: np.random.Generator,
               canvas_size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """One image of `identity` in a `canvas_size` square canvas: (BGR uint8 image, landmarks (5, 2))."""
    yaw = rng.uniform(-0.3, 0.3)
    face, alpha, landmarks = draw_face(identity, rng, yaw)
    map_x, map_y, squeeze = _squeeze_maps(yaw)
    face = cv2.remap(face, map_x, map_y, cv2.INTER_LINEAR)
    alpha = cv2.remap(alpha, map_x, map_y, cv2.INTER_LINEAR)
    landmarks = np.column_stack([squeeze(landmarks[:, 0]), landmarks[:, 1]])

    angle = float(np.clip(rng.normal(0, 12), -30, 30))
    scale = rng.uniform(0.42, 0.62) * canvas_size / FRAME
    centre = canvas_size / 2 + rng.uniform(-0.12, 0.12, size=2) * canvas_size
    matrix = cv2.getRotationMatrix2D((CENTRE_X, FRAME / 2), angle, scale)
    matrix[:, 2] += centre - np.array([CENTRE_X, FRAME / 2])
    face = cv2.warpAffine(face, matrix, (canvas_size, canvas_size), flags=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.warpAffine(alpha, matrix, (canvas_size, canvas_size), flags=cv2.INTER_LINEAR)[..., None]
    landmarks = landmarks @ matrix[:, :2].T + matrix[:, 2]

    image = face * alpha + _background(rng, canvas_size) * (1 - alpha)
    if rng.random() < 0.35:  # occluder: a patch over part of the face
        face_size = scale * FRAME
        w, h = rng.uniform(0.25, 0.6) * face_size, rng.uniform(0.12, 0.35) * face_size
        x0, y0 = landmarks[rng.integers(0, 5)] + rng.uniform(-0.25, 0.25, size=2) * face_size - (w / 2, h / 2)
        x0, y0 = int(max(0, x0)), int(max(0, y0))
        image[y0:y0 + int(h), x0:x0 + int(w)] = rng.uniform(0, 255, size=3)
    ys, xs = np.mgrid[0:canvas_size, 0:canvas_size].astype(np.float32) / canvas_size - 0.5
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    gradient = 1.0 + rng.uniform(0, 1.0) * (xs * direction[0] + ys * direction[1])
    image *= gradient[..., None] * rng.uniform(0.6, 1.3) * rng.uniform(0.8, 1.2, size=3)
    sigma = rng.uniform(0, 1.8)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    image += rng.normal(0, rng.uniform(2, 12), size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), landmarks


def identity_name(index: int) -> str:
    return f"id_{index:05d}"


def generate_dataset(out: str | Path, identities: int = 40, images_per_identity: int = 10, seed: int = 0,
                     canvas_size: int = 224, aligned_size: int = 112, progress: bool = True) -> dict:
    """Write `out/raw/<identity>/<k>.png` with `out/raw/landmarks.csv`, and the aligned tree `out/aligned`.

    The same arguments always give the same bytes. Returns a summary dict.
    """
    if identities < 1 or images_per_identity < 1:
        raise ValueError(f"identities and images_per_identity must be >= 1, got {identities} and {images_per_identity}")
    out = Path(out)
    raw_root, aligned_root = out / "raw", out / "aligned"
    rows_raw, rows_aligned = [], []
    for index in tqdm(range(identities), desc="synth", unit="identity", disable=not progress):
        name = identity_name(index)
        identity = sample_identity(np.random.default_rng([seed, index]))
        (raw_root / name).mkdir(parents=True, exist_ok=True)
        (aligned_root / name).mkdir(parents=True, exist_ok=True)
        for image_index in range(images_per_identity):
            rng = np.random.default_rng([seed, index, image_index, 1])
            raw, landmarks = render_raw(identity, rng, canvas_size)
            aligned, matrix = align_face(raw, landmarks, aligned_size)
            aligned_landmarks = landmarks @ matrix[:, :2].T + matrix[:, 2]
            relative = f"{name}/{image_index:03d}.png"
            cv2.imwrite(str(raw_root / relative), raw)
            cv2.imwrite(str(aligned_root / relative), aligned)
            rows_raw.append([relative, name, *np.round(landmarks.ravel(), 3)])
            rows_aligned.append([relative, name, *np.round(aligned_landmarks.ravel(), 3)])
    for root, rows in ((raw_root, rows_raw), (aligned_root, rows_aligned)):
        with open(root / "landmarks.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "identity", *LANDMARK_COLUMNS])
            writer.writerows(rows)
    return {"out": str(out), "identities": identities, "images": len(rows_raw),
            "raw": str(raw_root), "aligned": str(aligned_root)}


def read_landmarks(csv_path: str | Path) -> dict[str, np.ndarray]:
    """Read a `landmarks.csv` into {relative path: (5, 2) array}."""
    with open(csv_path, newline="") as handle:
        return {row["path"]: np.array([float(row[c]) for c in LANDMARK_COLUMNS]).reshape(5, 2)
                for row in csv.DictReader(handle)}
