"""Test doubles and helpers shared by the gallery tests: synthetic people, an embeddings-only gallery on a chosen
backend, an embedder that records its batches (and can hold them at a gate), and a file that cannot be read."""

import contextlib
import os
import threading
from pathlib import Path

import numpy as np

from faceid.arrays import l2_normalize
from faceid.gallery.gallery import Gallery


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


def stored(gallery: Gallery, query: str, *args):
    """One read of the gallery's store (`MetadataStore.<query>(*args)`), through its public `reading()`."""
    with gallery.reading() as store:
        return getattr(store, query)(*args)


def embeddings_gallery(path, backend: str = "faiss", dim: int = 16, fingerprint: str = "test-embedder",
                       **options) -> Gallery:
    """A new gallery of `dim`-d embeddings (no embedder) on `backend`; `options` go to `Gallery.create`."""
    return Gallery.create(path, fingerprint={"fingerprint": fingerprint, "embedding_dim": dim}, backend=backend,
                          **options)


class RecordingEmbedder:
    """A real embedder that records the batch size of each call. Within `with embedder.hold():` each call waits at
    a gate until the block ends, counted in `waiting` meanwhile: a test acts while embedding is known to be under
    way (e.g. `wait_for(lambda: embedder.waiting)`), instead of slowing every batch by a guessed delay."""

    HOLD_LIMIT_S = 120.0  # a held call gives up (raises) if the test never ends its hold

    def __init__(self, inner):
        self.inner, self.batches, self.waiting = inner, [], 0
        self._open, self._count = threading.Event(), threading.Lock()
        self._open.set()
        self.fingerprint, self.embedding_dim, self.model_input = (inner.fingerprint, inner.embedding_dim,
                                                                  inner.model_input)

    @contextlib.contextmanager
    def hold(self):
        """Hold every call made during the block at the gate; the block's end lets them all through."""
        self._open.clear()
        try:
            yield self
        finally:
            self._open.set()

    def embed(self, crops):
        self.batches.append(len(crops))
        if not self._open.is_set():
            with self._count:
                self.waiting += 1
            try:
                if not self._open.wait(self.HOLD_LIMIT_S):
                    raise RuntimeError(f"held at the gate for {self.HOLD_LIMIT_S:g} s: the test never let it through")
            finally:
                with self._count:
                    self.waiting -= 1
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
