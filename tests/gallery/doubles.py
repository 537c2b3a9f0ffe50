"""Test doubles and helpers shared by the gallery tests: synthetic people, an embeddings-only gallery on a chosen
backend, an embedder that records (and may slow) its batches, and a file that cannot be read."""

import os
import time
from pathlib import Path

import numpy as np
from faceid.gallery.gallery import Gallery

from faceid.arrays import l2_normalize


def unit32(vectors) -> np.ndarray:
    """Unit float32 vectors (the gallery's own dtype, so that scores compare exactly)."""
    return l2_normalize(vectors).astype(np.float32)


def synthetic_people(count: int, per_person: int = 2, seed: int = 0, spread: float = 0.3, dim: int = 16,
                     prefix: str = "p", dtype=np.float32) -> tuple[dict, np.ndarray]:
    """`count` people around random unit centres: ({name: (per_person, dim) unit templates}, centres)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.normal(size=(count, dim))).astype(dtype)
    people = {f"{prefix}{i:03d}": l2_normalize(centres[i] + spread * rng.normal(size=(per_person, dim))).astype(dtype)
              for i in range(count)}
    return people, centres


def embeddings_gallery(path, backend: str = "faiss", dim: int = 16, fingerprint: str = "test-embedder",
                       **options) -> Gallery:
    """A new gallery of `dim`-d embeddings (no embedder) on `backend`; `options` go to `Gallery.create`."""
    return Gallery.create(path, fingerprint={"fingerprint": fingerprint, "embedding_dim": dim}, backend=backend,
                          **options)


class RecordingEmbedder:
    """A real embedder that records the batch size of each call, taking `delay` seconds per batch."""

    def __init__(self, inner, delay: float = 0.0):
        self.inner, self.delay, self.batches = inner, delay, []
        self.fingerprint, self.embedding_dim, self.preprocessing = (inner.fingerprint, inner.embedding_dim,
                                                                    inner.preprocessing)

    def embed(self, crops):
        self.batches.append(len(crops))
        if self.delay:
            time.sleep(self.delay)
        return self.inner.embed(crops)


def deny_reading(monkeypatch, locked: Path) -> None:
    """Make reading `locked` raise the PermissionError a user gets (root reads a chmod-000 file anyway)."""
    if not os.access(locked, os.R_OK):
        return
    read_bytes = Path.read_bytes

    def refuse(path):
        if path == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
