"""`SampleResolver`: enrollment samples and probes -> validated unit embeddings (`Sample`s).

An input is an image (a path, or an RGB array run through the shared `FacePreprocessor` when there
is one, then through the embedder) or an embedding (checked for dimension, finite values and a
non-zero norm). Every error names the input and what is wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceid.arrays import NORM_EPS, l2_normalize
from faceid.data.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_rgb, read_bytes
from gallery.records import GalleryError, Sample


@dataclass(frozen=True)
class Prepared:
    """An image on its way to a `Sample`: decoded, detected and aligned, not yet embedded."""

    name: str
    crop: np.ndarray
    source: str | None
    file_hash: str
    quality: float | None


def embedder_fingerprint(embedder) -> dict:
    """What a gallery records about its embedder: vectors from embedders with different fingerprints never mix."""
    return {"fingerprint": embedder.fingerprint, "embedding_dim": int(embedder.embedding_dim),
            "preprocessing": repr(embedder.preprocessing)}


class SampleResolver:
    """Resolves images or embeddings of dimension `dim` to `Sample`s, with an optional embedder and preprocessor."""

    def __init__(self, dim: int, embedder=None, preprocessor=None, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.dim, self.embedder, self.preprocessor, self.max_pixels = int(dim), embedder, preprocessor, max_pixels

    def resolve(self, items, names: list[str] | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises."""
        samples = []
        for position, item in enumerate(items):
            name = ((names[position] if names else None)
                    or (str(item) if isinstance(item, (str, Path)) else f"input {position}"))
            if isinstance(item, Sample):
                samples.append(item)
            elif isinstance(item, (str, Path)) or (isinstance(item, np.ndarray) and item.ndim == 3):
                samples.append(self.image(item, name))
            else:
                vector = self.embedding(item, name)
                samples.append(Sample(vector, None, hashlib.sha256(vector.tobytes()).hexdigest()))
        return samples

    def embedding(self, vector, name: str) -> np.ndarray:
        """`vector` as a unit float32 embedding of the gallery's dimension."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise GalleryError(f"{name}: embedding has dimension {vector.size}, the gallery holds {self.dim}")
        if not np.isfinite(vector).all():
            raise GalleryError(f"{name}: embedding contains NaN or infinite values")
        norm = float(np.linalg.norm(vector))
        if norm < NORM_EPS:
            raise GalleryError(f"{name}: embedding is all zeros" if norm == 0 else
                               f"{name}: embedding has norm {norm:.3g}, too small to normalise")
        return l2_normalize(vector)

    def image(self, image, name: str) -> Sample:
        """An image path or RGB array -> its sample: file hash, face quality (with a preprocessor), embedding."""
        return self.embed_prepared([self.prepare(image, name)])[0]

    def prepare(self, image, name: str, data: bytes | None = None) -> Prepared:
        """An image path, RGB array or encoded bytes (`data`, e.g. an upload) -> its face crop and file hash,
        not yet embedded; `embed_prepared` embeds many in one batch."""
        if self.embedder is None:
            raise GalleryError(f"{name}: images need the gallery to be opened with an embedder")
        path = Path(image) if isinstance(image, (str, Path)) else None
        try:
            if path is not None:
                data = read_bytes(path)
            rgb = decode_rgb(data, name, self.max_pixels) if data is not None else np.asarray(image)
        except ImageReadError as error:
            raise GalleryError(f"{name}: {error.reason}") from None
        file_hash = hashlib.sha256(data if data is not None else rgb.tobytes()).hexdigest()
        quality = None
        if self.preprocessor is not None:
            faces = self.preprocessor(rgb)
            if not faces:
                raise GalleryError(f"{name}: no face found")
            crop, quality = faces[0].crop, float(faces[0].face.score)
        else:
            crop = rgb
        return Prepared(name, crop, str(path) if path else None, file_hash, quality)

    def embed_prepared(self, prepared: list[Prepared]) -> list[Sample]:
        """One embedder batch for all the prepared crops."""
        if not prepared:
            return []
        embeddings = self.embedder.embed([p.crop for p in prepared])
        return [Sample(self.embedding(vector, p.name), p.source, p.file_hash, p.quality)
                for p, vector in zip(prepared, embeddings, strict=True)]
