"""What the HTTP API shows of an identity: `Gallery.identity` with each template's source reduced to its file name
(the server's paths stay on the server) and, for an image the gallery keeps (`samples.kept_images`), a small JPEG
thumbnail as a data URI."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from faceid.gallery.gallery import Gallery
from faceid.gallery.samples.kept_images import is_kept

THUMBNAIL_SIDE = 96  # pixels, the longer side


def identity_detail(gallery: Gallery, name: str) -> dict:
    """`schemas.IdentityDetail` of `name`; raises `NotEnrolled` for an unknown name."""
    identity = gallery.identity(name)
    samples = [{"template": t["template"], "file_name": Path(t["source"]).name if t["source"] else None,
                "file_hash": t["file_hash"], "quality": t["quality"], "created": t["created"],
                "thumbnail": thumbnail_uri(Path(t["source"])) if is_kept(gallery, t["source"]) else None}
               for t in identity["samples"]]
    return {**identity, "samples": samples}


def thumbnail_uri(path: Path, side: int = THUMBNAIL_SIDE) -> str | None:
    """The image at `path` shrunk to at most `side` pixels a side, as a `data:image/jpeg;base64,...` URI; None when
    it is gone or no longer readable."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (side, side))  # a JPEG decodes at a fraction of its size
            small = image.convert("RGB")
        small.thumbnail((side, side))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
