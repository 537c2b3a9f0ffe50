"""Reading image files as RGB uint8 arrays, with a clear error naming the file when that fails.

Decoding is refused, from the header alone, for images above `max_pixels` (default 40 MP): a small
compressed file can otherwise unpack to gigabytes (a "decompression bomb").
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 40_000_000


class ImageReadError(ValueError):
    """An image file that is missing, unreadable, empty, truncated, too large or not an image; `reason` is the
    short kind."""

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, or ImageReadError when it is missing or cannot be read (permissions, I/O errors)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    try:
        return path.read_bytes()
    except PermissionError:
        raise ImageReadError(path, "permission denied: the file cannot be read") from None
    except OSError as error:
        raise ImageReadError(path, "cannot be read", error.strerror or str(error)) from None


def read_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) RGB uint8, EXIF orientation applied; grayscale, palette, RGBA, CMYK and 16-bit become RGB."""
    return decode_rgb(read_bytes(path), Path(path), max_pixels)


def decode_rgb(data: bytes, name, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """`read_rgb` for bytes already in memory (an upload, a record); `name` labels errors."""
    if not data:
        raise ImageReadError(name, "empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(name, f"image too large: {width}x{height} pixels, the limit is {max_pixels} "
                                           "(shrink the image, or raise the limit with --max-pixels)")
            image.load()
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.float64)
                image = Image.fromarray((array / max(array.max(), 1) * 255).astype(np.uint8))
            return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as error:
        raise ImageReadError(name, "image too large", str(error)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageReadError(name, "not a readable image", str(error)) from None
