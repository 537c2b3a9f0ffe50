"""Five-point face alignment: a least-squares similarity transform onto the ArcFace template.

Landmarks are ordered left eye, right eye, nose tip, left mouth corner, right mouth corner, as
(x, y) pixel coordinates in the image that holds the face ("left" is the image's left).
"""

import cv2
import numpy as np

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


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


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


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int | tuple[int, int] = 112
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that its 5 `landmarks` land on the ArcFace template for `size`.

    Returns (crop, matrix): the (height, width, channels) crop and the 2x3 matrix from image to crop
    coordinates. Pixels that fall outside the source image are filled by edge replication
    (`cv2.BORDER_REPLICATE`), which keeps hard black borders out of the embedding's input.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"landmarks must have shape (5, 2), got {landmarks.shape}")
    height, width = _size_hw(size)
    matrix = estimate_similarity(landmarks, template_for_size((height, width)))
    crop = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix
