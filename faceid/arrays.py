"""Small array helpers shared by every stage (one copy each, for numpy arrays)."""

import numpy as np

NORM_EPS = 1e-12


def l2_normalize(vectors, axis: int = -1, eps: float = NORM_EPS) -> np.ndarray:
    """`vectors` scaled to unit L2 norm along `axis`, as float32 (float64 stays float64).

    A zero vector stays zero instead of becoming NaN: its norm is clamped at `eps`.
    """
    array = np.asarray(vectors)
    if array.dtype != np.float64:
        array = array.astype(np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=axis, keepdims=True), eps)
