"""Reading image files as RGB uint8 arrays, with a clear error naming the file when that fails."""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageReadError(ValueError):
    """An image file that is missing, empty, truncated or not an image; `reason` is the short kind."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) RGB uint8, EXIF orientation applied; grayscale, palette, RGBA, CMYK and 16-bit become RGB."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(path, "not a readable image", str(error)) from None
