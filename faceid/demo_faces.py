"""The demo's faces for each model: every source image with its five landmarks, cropped onto a model's
alignment template. Synthetic images bring their landmarks (the generator's `raw/landmarks.csv`); photos
get theirs from one MTCNN pass (the shared FacePreprocessor's detector). Cropping from the landmarks,
rather than detecting again, gives every model the same faces, each in the crop it was trained on."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from faceid.alignment import align_face
from faceid.data.folder import LabelledImage, list_identity_folder
from faceid.data.images import read_rgb
from faceid.data.synthetic import read_landmarks
from faceid.face_selection import DEFAULT_SELECT
from faceid.preprocessing import FacePreprocessor

DETECT_BATCH = 16


@dataclass(frozen=True)
class SourceFace:
    image: LabelledImage  # the raw image or photo
    landmarks: np.ndarray  # (5, 2) in its pixel coordinates


def synthetic_faces(raw_root: Path) -> list[SourceFace]:
    """The generator's raw images with the landmarks it drew them with."""
    landmarks = read_landmarks(Path(raw_root) / "landmarks.csv")
    return [SourceFace(item, landmarks[item.relative]) for item in list_identity_folder(raw_root)]


def detected_faces(photos: Path, device: str = "auto",
                   select: str = DEFAULT_SELECT) -> tuple[list[SourceFace], list[LabelledImage]]:
    """The `select` face (default: the subject) of each photo of an identity-folder tree, by MTCNN; (faces, photos
    without a face)."""
    items = list_identity_folder(photos)
    if not items:
        raise ValueError(f"{photos} holds no identity folders of images (expected {photos}/<identity>/<image>)")
    detector = FacePreprocessor(select=select, device=device).detector
    faces, missed = [], []
    for start in range(0, len(items), DETECT_BATCH):
        batch = items[start:start + DETECT_BATCH]
        found = detector.detect_arrays([read_rgb(item.path) for item in batch])
        for item, detections in zip(batch, found, strict=True):
            if detections:
                faces.append(SourceFace(item, np.asarray(detections[0].landmarks, np.float64)))
            else:
                missed.append(item)
    return faces, missed


def write_crops(faces: list[SourceFace], template, out: Path) -> list[LabelledImage]:
    """Each face aligned onto `template` (a model's `preprocessing.crop_template()`), written as
    `out/<identity>/<name>.png`; the crops as labelled images, in the order of `faces`."""
    crops = []
    for face in faces:
        crop, _ = align_face(read_rgb(face.image.path), face.landmarks, template)  # as FacePreprocessor aligns
        path = Path(out) / face.image.identity / (face.image.path.stem + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        crops.append(LabelledImage(path, face.image.identity))
    return crops
