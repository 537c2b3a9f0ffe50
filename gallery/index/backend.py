"""Where a gallery keeps its vectors: the `VectorBackend` interface, its one registry and `build_backend`.

A backend holds unit vectors under int64 ids (template or identity row ids) and answers inner-product searches.
SQLite stays the source of truth (`gallery.store`); `gallery.index.live_index` keeps a backend at the store's
generation. Backends come in two kinds, told apart by `capabilities.snapshots`:
- the vectors live in this process's memory and `LiveIndex` saves them as checksummed snapshot files
  (`SnapshotBackend`: `save`, `load`, `follow_tuning`);
- the vectors live in a service that every process of the gallery shares, which persists them itself
  (`SharedBackend`: `synced`, `mark`, `matches`, `rebuild_reason`).

Adding a backend is one class with `describe` and `open` plus one `@BACKENDS.register(name)`;
`gallery/index/__init__.py` imports the backend modules so that their registrations run. Nothing else names one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from faceid.registry import Registry, check_options

BACKENDS = Registry("gallery backend")
DEFAULT_BACKEND = "faiss"


@dataclass(frozen=True)
class BackendCapabilities:
    snapshots: bool  # True: in memory, saved as snapshot files; False: shared, persisted by the backend itself
    max_results: int | None = None  # the most results one search returns (None: no cap)
    tunes_search: bool = False  # faceid tunes its search parameters (`gallery tune`); False: the backend's own
    single_process: str | None = None  # why only one process at a time may open it, if so


class VectorBackend(Protocol):
    dim: int
    factory: str  # what `Gallery.stats()` shows as the index

    @property
    def capabilities(self) -> BackendCapabilities: ...

    @property
    def ids(self) -> np.ndarray: ...

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the content with `vectors` (N, d) under `ids`."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Add in place; False when it cannot (the caller rebuilds)."""

    def remove(self, ids: np.ndarray) -> bool:
        """Remove in place (absent ids are ignored); False when it cannot (the caller rebuilds)."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best per query; -1 ids pad when fewer vectors exist."""

    def content(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(ids, their vectors as stored) for `gallery check`; vectors None where they cannot be read back."""

    def __len__(self) -> int: ...

    def close(self) -> None: ...


class SnapshotBackend(VectorBackend, Protocol):
    def save(self, path: Path) -> int:
        """Write the index to `path` atomically and durably; returns the file's CRC-32."""

    def load(self, path: Path, checksum: int) -> str | None:
        """Load the snapshot at `path` if its CRC-32 is `checksum`; else why not."""

    def follow_tuning(self) -> None:
        """Take a newer tuning record another process stored."""


class SharedBackend(VectorBackend, Protocol):
    rebuild_reason: str

    def synced(self) -> int | None:
        """The store generation the shared vectors hold (None: unknown)."""

    def mark(self, generation: int) -> None:
        """Record that the shared vectors hold every change up to `generation`."""

    def matches(self, expected_ids: np.ndarray) -> bool:
        """Whether the shared vectors are exactly those under `expected_ids`."""


def describe_backend(name: str, folder: Path, dim: int, index: str, options: dict | None = None) -> dict:
    """What a new gallery in `folder` stores about its backend `name`, checked now: a bad index string or option
    fails before anything is created."""
    backend = BACKENDS.get(name)
    options = dict(options or {})
    check_options(f"gallery backend {name!r}", backend.describe, options, skip=3)
    return {"name": name, **backend.describe(Path(folder), dim, index, **options)}


def build_backend(description: dict, dim: int, settings, gpu: bool = False) -> VectorBackend:
    """The backend a gallery's stored `description` names, opened for `dim`-d vectors; `settings` is the gallery's
    store (index factory, search parameters, tuning records)."""
    return BACKENDS.get(description["name"]).open(dim, description, settings, gpu)
