"""The one preprocessing every stage uses: detect, select, align. Training data preparation,
enrollment and queries all go through `FacePreprocessor`, so they can never disagree.

When no face is found, `FacePreprocessor.centred` aligns the photo's centre instead, as if a face sat there with the
mean landmark layout of photo subjects (`CENTRED_LANDMARKS`): the usual convention of benchmarks whose photos are
centred on the labelled person, so that every pair is scored (`faceid evaluate --no-face center`)."""

import copy
from dataclasses import dataclass

import numpy as np

from faceid.alignment import align_face
from faceid.detection import FaceDetector, to_rgb_array
from faceid.face_selection import DEFAULT_SELECT, DetectedFace, check_select

# Where the face is taken to be when none is found, in units of the photo's shorter side from its centre: the mean
# layout of the subject's five landmarks over celeba_wild's photos (tools/celeba_wild_study.py, "centred_layout"),
# moved so that the landmarks' centre is the photo's centre (a centred subject; celeba_wild's own photos hold their
# subjects a little high, which would not carry to other benchmarks). Its eyes are 0.155 of the side apart.
CENTRED_LANDMARKS = np.array([[-0.079, -0.0835], [0.0763, -0.0876], [-0.0005, 0.0119], [-0.0677, 0.0816],
                              [0.071, 0.0778]])


@dataclass(frozen=True)
class AlignedFace:
    crop: np.ndarray  # (size, size, 3) RGB uint8
    matrix: np.ndarray  # 2x3, image -> crop
    face: DetectedFace


class FacePreprocessor:
    """`size` is the crop: an alignment template (name, spec or `AlignmentTemplate`, e.g. an embedder's
    `preprocessing.crop_template()`), or an int / (height, width) for the ArcFace template at that size."""

    def __init__(self, detector: FaceDetector | None = None, size=112,
                 select: str = DEFAULT_SELECT, **detector_options):
        self.detector = detector or FaceDetector(select=select, **detector_options)
        self.detector.select = check_select(select)
        self.size = size

    def centred(self, rgb: np.ndarray) -> AlignedFace:
        """The crop of a face taken to be at the photo's centre, with the mean layout `CENTRED_LANDMARKS`."""
        return self.align(rgb, [centred_face(rgb.shape)])[0]

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
        if check_select(select) == self.detector.select:
            return self
        selecting = copy.copy(self)
        selecting.detector = copy.copy(self.detector)
        selecting.detector.select = select
        return selecting


def centred_face(shape: tuple[int, ...]) -> DetectedFace:
    """A face at the centre of a photo of `shape` (detector score 0): landmarks `CENTRED_LANDMARKS`, and the box
    around them grown by half their extent on each side."""
    height, width = shape[:2]
    landmarks = (np.array([width / 2, height / 2]) + CENTRED_LANDMARKS * min(height, width)).astype(np.float32)
    low, high = landmarks.min(0), landmarks.max(0)
    grow = (high - low) / 2
    box = np.concatenate([np.maximum(low - grow, 0), np.minimum(high + grow, [width, height])]).astype(np.float32)
    return DetectedFace(box, 0.0, landmarks)
