"""`SampleResolver`: enrollment samples and probes -> validated unit embeddings (`Sample`s).

An input is an image (a path, or an RGB array run through the shared `FacePreprocessor` when there
is one, then through the embedder) or an embedding (checked for dimension, finite values and a
non-zero norm). Every error names the input and what is wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from faceid.arrays import NORM_EPS, l2_normalize
from faceid.data.images import ImageReadError, read_rgb
from gallery.records import GalleryError, Sample


def embedder_fingerprint(embedder) -> dict:
    """What a gallery records about its embedder: vectors from embedders with different fingerprints never mix."""
    return {"fingerprint": embedder.fingerprint, "embedding_dim": int(embedder.embedding_dim),
            "preprocessing": repr(embedder.preprocessing)}


class SampleResolver:
    """Resolves images or embeddings of dimension `dim` to `Sample`s, with an optional embedder and preprocessor."""

    def __init__(self, dim: int, embedder=None, preprocessor=None):
        self.dim, self.embedder, self.preprocessor = int(dim), embedder, preprocessor

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
        if self.embedder is None:
            raise GalleryError(f"{name}: images need the gallery to be opened with an embedder")
        path = Path(image) if isinstance(image, (str, Path)) else None
        try:
            rgb = read_rgb(path) if path is not None else np.asarray(image)
        except ImageReadError as error:
            raise GalleryError(f"{name}: {error.reason}") from None
        file_hash = hashlib.sha256(path.read_bytes() if path else rgb.tobytes()).hexdigest()
        quality = None
        if self.preprocessor is not None:
            faces = self.preprocessor(rgb)
            if not faces:
                raise GalleryError(f"{name}: no face found")
            crop, quality = faces[0].crop, float(faces[0].face.score)
        else:
            crop = rgb
        embedding = self.embedder.embed([crop])[0]
        return Sample(self.embedding(embedding, name), str(path) if path else None, file_hash, quality)
