"""Reading image files as RGB uint8 arrays, with a clear error naming the file when that fails."""

import io
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
    return decode_rgb(path.read_bytes(), path)


def decode_rgb(data: bytes, name) -> np.ndarray:
    """`read_rgb` for bytes already in memory (an upload, a record); `name` labels errors."""
    if not data:
        raise ImageReadError(name, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(name, "not a readable image", str(error)) from None
