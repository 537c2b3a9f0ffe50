"""Kept images: with the gallery setting `keep_images` on, every enrolled image (a file or an upload) is
copied into the gallery, content-addressed by its file hash (GALLERY/images/ab/abcdef....png, written
atomically), and its template's source points there, so every template can be re-embedded later,
whatever becomes of the original file."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

from faceid.data.images import ImageReadError, read_bytes
from faceid.files import atomic_write

SETTING = "keep_images"


def keeps_images(gallery) -> bool:
    return bool(gallery.setting(SETTING, False))


def set_keep_images(gallery, on: bool) -> dict:
    with gallery.writing() as write:
        write.set(SETTING, bool(on))
        write.audit("keep_images", None, {"on": bool(on)})
    return {SETTING: bool(on)}


def is_kept(gallery, source: str | None) -> bool:
    """Whether `source` is an image kept inside the gallery."""
    return bool(source) and (gallery.path / "images").resolve() in Path(source).resolve().parents


def keep_bytes(gallery, data: bytes, file_hash: str, suffix: str = "") -> str:
    """Store `data` under its hash inside the gallery (once); returns the kept path."""
    folder = gallery.path / "images" / file_hash[:2]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (file_hash + (suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,5}", suffix) else ""))
    if not target.exists():
        with atomic_write(target) as temporary:
            temporary.write_bytes(data)
    return str(target)


def keep_images(gallery, samples: list) -> list:
    """`samples` whose source images are kept inside the gallery (when the setting is on). A source that is
    gone, or no longer matches its hash, cannot be kept: its template keeps pointing at it."""
    if not keeps_images(gallery):
        return samples
    kept = []
    for sample in samples:
        source = getattr(sample, "source", None)
        if source and sample.file_hash and not is_kept(gallery, source):
            try:
                data = read_bytes(source)
            except ImageReadError:  # e.g. an imported template whose image is gone: `reembed` will name it
                data = None
            if data is not None and hashlib.sha256(data).hexdigest() == sample.file_hash:
                sample = replace(sample, source=keep_bytes(gallery, data, sample.file_hash, Path(source).suffix))
        kept.append(sample)
    return kept
