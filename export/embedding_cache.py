"""Face embeddings cached by image content: one SQLite file, `$FACEID_HOME/cache/faces.sqlite` by default.

A row is keyed by what decides the answer: the embedder's fingerprint, the face selection, and the sha256 of the
image file's bytes. So a renamed or copied photo is found again, an edited one is embedded anew, and another model
never reads this one's vectors. A photo with no face, or one that cannot be decoded, is remembered too: no
embedding, and the problem. Each `put_many` is one
transaction: a crash leaves the cache as it was before it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = """CREATE TABLE IF NOT EXISTS faces (
    fingerprint TEXT NOT NULL, selection TEXT NOT NULL, content TEXT NOT NULL,
    embedding BLOB, box TEXT, problem TEXT, PRIMARY KEY (fingerprint, selection, content))"""


@dataclass(frozen=True)
class CachedFace:
    """One image's selected face: its embedding and box, or None for both and the problem (no face, undecodable)."""

    embedding: np.ndarray | None
    box: list[float] | None
    problem: str | None = None


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def default_cache_file() -> Path:
    from faceid.zoo import faceid_home

    return faceid_home() / "cache" / "faces.sqlite"


class EmbeddingCache:
    def __init__(self, path: str | Path | None, fingerprint: str, selection: str):
        self.path = Path(path) if path else default_cache_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = (str(fingerprint), selection)
        self._connection = sqlite3.connect(self.path)
        self._connection.execute(SCHEMA)

    def get_many(self, contents: list[str]) -> dict[str, CachedFace]:
        """The cached faces among `contents` (sha256 hex digests)."""
        found = {}
        for start in range(0, len(contents), 500):
            chunk = contents[start:start + 500]
            rows = self._connection.execute(
                f"SELECT content, embedding, box, problem FROM faces WHERE fingerprint = ? AND selection = ? "
                f"AND content IN ({', '.join('?' * len(chunk))})", (*self.key, *chunk))
            for content, blob, box, problem in rows:
                embedding = None if blob is None else np.frombuffer(blob, np.float32).copy()
                found[content] = CachedFace(embedding, None if box is None else json.loads(box), problem)
        return found

    def put_many(self, faces: dict[str, CachedFace]) -> None:
        rows = [(*self.key, content, None if face.embedding is None else np.asarray(face.embedding, np.float32)
                 .tobytes(), None if face.box is None else json.dumps([float(v) for v in face.box]), face.problem)
                for content, face in faces.items()]
        with self._connection:
            self._connection.executemany("INSERT OR REPLACE INTO faces VALUES (?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
