"""`Gallery`: enrolled identities for 1:1 verification and 1:N open-set identification.

A gallery is a directory: `gallery.db` (SQLite, the source of truth: identities, templates with
their embeddings, thresholds, the embedder's fingerprint and an append-only audit log), the FAISS
index of the current generation, and `.lock`, which serialises writers while readers go on.

Probes and enrollment samples are images (run through the shared `FacePreprocessor` and the
gallery's embedder) or embeddings. Every mutation validates all its inputs first, then commits one
SQLite transaction, then writes the index atomically: a crash at any point loses nothing that was
committed, and a stale or missing index is rebuilt from SQLite when the gallery is opened.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceid.data.images import ImageReadError, read_rgb
from gallery.index import VectorIndex
from gallery.store import MetadataStore

TEMPLATE_POLICIES = ("all", "mean")
UNKNOWN = "unknown"


class GalleryError(ValueError):
    """Bad input or an incompatible gallery; the message names the input and what is wrong."""


@dataclass(frozen=True)
class Sample:
    """One enrollment sample or probe, resolved to a unit embedding."""

    embedding: np.ndarray
    source: str | None = None
    file_hash: str | None = None
    quality: float | None = None


@dataclass(frozen=True)
class Decision:
    identity: str
    score: float
    threshold: float | None
    accepted: bool | None
    threshold_source: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IdentifyResult:
    """Top-k candidates; `identity` is the best candidate, or `unknown` when it scores below the threshold."""

    identity: str
    candidates: list[tuple[str, float]]
    threshold: float | None
    threshold_source: dict = field(default_factory=dict)


def _fingerprint_of(embedder) -> dict:
    return {"fingerprint": embedder.fingerprint, "embedding_dim": int(embedder.embedding_dim),
            "preprocessing": repr(embedder.preprocessing)}


class Gallery:
    def __init__(self, path: Path, embedder=None, preprocessor=None, gpu: bool = False):
        self.path = Path(path)
        self.embedder, self.preprocessor = embedder, preprocessor
        self.store = MetadataStore(self.path / "gallery.db")
        self.fingerprint = self.store.get("embedder")
        if self.fingerprint is None:
            raise GalleryError(f"{self.path} is not a faceid gallery (no embedder fingerprint); create it first")
        if embedder is not None and _fingerprint_of(embedder) != self.fingerprint:
            raise GalleryError(f"{self.path} was enrolled with embedder {self.fingerprint['fingerprint']} "
                               f"(dim {self.fingerprint['embedding_dim']}); this embedder is {embedder.fingerprint} "
                               f"(dim {embedder.embedding_dim}). Use `reembed` to migrate the gallery.")
        self.dim = int(self.fingerprint["embedding_dim"])
        self.policy = self.store.get("template_policy")
        self.backend = self.store.get("backend", {"name": "faiss"})
        self.gpu = gpu
        self.index = self._new_index()
        self._loaded_generation = None
        self._refresh()

    def _new_index(self):
        parameters = self.store.get("search_parameters")
        if self.backend["name"] == "milvus":
            from gallery.milvus_index import MilvusIndex

            return MilvusIndex(self.dim, self.backend["uri"], self.backend.get("index_type", "FLAT"), parameters)
        return VectorIndex(self.dim, self.store.get("index_factory"), parameters, self.gpu)

    # ----- creation and opening ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, embedder=None, *, fingerprint: dict | None = None, index_factory: str = "Flat",
               template_policy: str = "all", search_parameters: dict | None = None, preprocessor=None,
               backend: str = "faiss", milvus_uri: str | None = None) -> "Gallery":
        """A new, empty gallery for `embedder` (or for embeddings described by `fingerprint`).

        `backend="milvus"` keeps the vectors in Milvus: `milvus_uri` names a cluster
        (`http://host:19530`), or, by default, a Milvus Lite file inside the gallery directory."""
        path = Path(path)
        if (path / "gallery.db").exists():
            raise GalleryError(f"{path} already holds a gallery")
        if template_policy not in TEMPLATE_POLICIES:
            raise GalleryError(f"template_policy must be one of {TEMPLATE_POLICIES}, got {template_policy!r}")
        if embedder is None and fingerprint is None:
            raise GalleryError("a gallery needs an embedder, or a fingerprint with embedding_dim for embeddings only")
        description = _fingerprint_of(embedder) if embedder is not None else dict(fingerprint)
        if "embedding_dim" not in description:
            raise GalleryError("the fingerprint must give embedding_dim")
        if backend not in ("faiss", "milvus"):
            raise GalleryError(f"backend must be 'faiss' or 'milvus', got {backend!r}")
        if backend == "faiss":
            VectorIndex(int(description["embedding_dim"]), index_factory)  # fails early on a bad factory string
        path.mkdir(parents=True, exist_ok=True)
        backend_description = {"name": backend}
        if backend == "milvus":
            backend_description.update(uri=milvus_uri or str(path.resolve() / "milvus.db"),
                                       index_type="FLAT" if index_factory == "Flat" else index_factory)
        store = MetadataStore(path / "gallery.db")
        with store.transaction() as connection:
            store.set(connection, "embedder", description)
            store.set(connection, "index_factory", index_factory)
            store.set(connection, "backend", backend_description)
            store.set(connection, "template_policy", template_policy)
            store.set(connection, "search_parameters", search_parameters or {})
            store.set(connection, "generation", 0)
            store.audit(connection, "create", None, {"index_factory": index_factory, "policy": template_policy})
        store.close()
        return cls(path, embedder, preprocessor)

    def close(self) -> None:
        self.index.close()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _writer(self):
        """The writer lock: one writer at a time, across processes; readers are never blocked."""
        with open(self.path / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._refresh(persist=True)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ----- index state ---------------------------------------------------------------------------
    def _vectors_for_index(self) -> tuple[np.ndarray, np.ndarray]:
        ids, owners, embeddings = self.store.all_templates()
        if self.policy == "all":
            return ids, embeddings
        identity_ids = np.unique(owners)
        means = [embeddings[owners == i].mean(0) for i in identity_ids]
        means = np.stack(means) if means else np.zeros((0, self.dim), np.float32)
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return identity_ids, means.astype(np.float32)

    def _index_ids(self) -> np.ndarray:
        """The ids the index must hold: template ids, or (mean policy) ids of identities with templates."""
        query = ("SELECT id FROM templates ORDER BY id" if self.policy == "all"
                 else "SELECT DISTINCT identity_id FROM templates ORDER BY identity_id")
        return np.array([row[0] for row in self.store.connection.execute(query)], np.int64)

    def _load_names(self) -> None:
        """Map index ids to identity names."""
        rows = self.store.connection.execute("SELECT id, identity_id FROM templates").fetchall()
        self._names = self.store.identity_names()
        self._owner = dict(rows) if self.policy == "all" else {i: i for i in self._names}

    def _refresh(self, persist: bool = False) -> None:
        """Bring the in-memory index to the store's generation: load its file, or rebuild it from SQLite
        (and, when `persist` — only under the writer lock — write the rebuilt index)."""
        generation = self.store.generation()
        if generation == self._loaded_generation:
            return
        if not self.index.load(self.path, generation, self._index_ids()):
            self.index.build(*self._vectors_for_index())
            if persist:
                self.index.save(self.path, generation)
        self._load_names()
        self._loaded_generation = generation

    def _commit_index(self, generation: int, added: tuple | None = None, removed: np.ndarray | None = None,
                      vectors_changed: bool = True) -> None:
        """Write the index of the committed `generation`: kept or updated in place where the index type
        and template policy allow it (added template ids and vectors, removed template ids), else rebuilt."""
        in_place = not vectors_changed or self.policy == "all" and (
            (added is not None and self.index.add(*added)) or (removed is not None and self.index.remove(removed)))
        if not in_place:
            self.index.build(*self._vectors_for_index())
        self.index.save(self.path, generation)
        self._load_names()
        self._loaded_generation = generation

    # ----- inputs --------------------------------------------------------------------------------
    def _check_embedding(self, vector, name: str) -> np.ndarray:
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise GalleryError(f"{name}: embedding has dimension {vector.size}, the gallery holds {self.dim}")
        if not np.isfinite(vector).all():
            raise GalleryError(f"{name}: embedding contains NaN or infinite values")
        norm = float(np.linalg.norm(vector))
        if norm == 0:
            raise GalleryError(f"{name}: embedding is all zeros")
        return vector / norm

    def _from_image(self, image, name: str) -> Sample:
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
        return Sample(self._check_embedding(embedding, name), str(path) if path else None, file_hash, quality)

    def resolve(self, items, names: list[str] | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises."""
        samples = []
        for position, item in enumerate(items):
            name = (names[position] if names else None) or (str(item) if isinstance(item, (str, Path)) else f"input {position}")
            if isinstance(item, Sample):
                samples.append(item)
            elif isinstance(item, (str, Path)) or (isinstance(item, np.ndarray) and item.ndim == 3):
                samples.append(self._from_image(item, name))
            else:
                vector = self._check_embedding(item, name)
                samples.append(Sample(vector, None, hashlib.sha256(vector.tobytes()).hexdigest()))
        return samples

    # ----- mutations -----------------------------------------------------------------------------
    def enroll(self, identity: str, items, metadata: dict | None = None) -> dict:
        """Add samples (images or embeddings) to `identity`, creating it if new. Re-enrolling appends;
        a sample whose file (or embedding) hash the identity already has is reported and skipped."""
        return self.enroll_many({identity: list(items)}, {identity: metadata or {}})[identity]

    def enroll_many(self, batches: dict[str, list], metadata: dict[str, dict] | None = None) -> dict[str, dict]:
        """Several identities in one transaction and one index write."""
        for identity in batches:
            if not identity or not isinstance(identity, str) or identity == UNKNOWN:
                raise GalleryError(f"identity name {identity!r} is not allowed")
        resolved = {identity: self.resolve(items) for identity, items in batches.items()}
        results, new_ids, new_vectors = {}, [], []
        with self._writer():
            with self.store.transaction() as connection:
                now = time.time()
                for identity, samples in resolved.items():
                    identity_id = self.store.identity_id(identity, connection)
                    if identity_id is None:
                        identity_id = connection.execute(
                            "INSERT INTO identities(name, metadata, created) VALUES(?, ?, ?)",
                            (identity, json.dumps((metadata or {}).get(identity, {})), now)).lastrowid
                    known = {row[0] for row in connection.execute(
                        "SELECT file_hash FROM templates WHERE identity_id = ?", (identity_id,))}
                    added, duplicates = 0, []
                    for sample in samples:
                        if sample.file_hash in known:
                            duplicates.append(sample.source or sample.file_hash[:12])
                            continue
                        known.add(sample.file_hash)
                        template_id = connection.execute(
                            "INSERT INTO templates(identity_id, source, file_hash, quality, embedding, created) "
                            "VALUES(?, ?, ?, ?, ?, ?)", (identity_id, sample.source, sample.file_hash, sample.quality,
                                                         sample.embedding.tobytes(), now)).lastrowid
                        new_ids.append(template_id)
                        new_vectors.append(sample.embedding)
                        added += 1
                    self.store.audit(connection, "enroll", identity, {"added": added, "duplicates": duplicates})
                    results[identity] = {"added": added, "duplicates": duplicates}
                generation = self.store.bump(connection)
            vectors = np.stack(new_vectors) if new_vectors else np.zeros((0, self.dim), np.float32)
            self._commit_index(generation, added=(np.array(new_ids, np.int64), vectors))
        return results

    def remove(self, identity: str) -> int:
        with self._writer():
            with self.store.transaction() as connection:
                identity_id = self._require(identity, connection)
                removed = np.array([r[0] for r in connection.execute(
                    "SELECT id FROM templates WHERE identity_id = ?", (identity_id,))], np.int64)
                count = connection.execute("DELETE FROM templates WHERE identity_id = ?", (identity_id,)).rowcount
                connection.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
                self.store.audit(connection, "remove", identity, {"templates": count})
                generation = self.store.bump(connection)
            self._commit_index(generation, removed=removed)
        return count

    def rename(self, identity: str, new_name: str) -> None:
        if not new_name or new_name == UNKNOWN:
            raise GalleryError(f"identity name {new_name!r} is not allowed")
        with self._writer():
            with self.store.transaction() as connection:
                identity_id = self._require(identity, connection)
                if self.store.identity_id(new_name, connection) is not None:
                    raise GalleryError(f"identity {new_name!r} already exists")
                connection.execute("UPDATE identities SET name = ? WHERE id = ?", (new_name, identity_id))
                self.store.audit(connection, "rename", identity, {"to": new_name})
                generation = self.store.bump(connection)
            self._commit_index(generation, vectors_changed=False)

    def set_threshold(self, threshold: float, source: dict) -> None:
        with self._writer(), self.store.transaction() as connection:
            self.store.set(connection, "threshold", {"threshold": float(threshold), **source})
            self.store.audit(connection, "threshold", None, {"threshold": float(threshold), **source})

    def _require(self, identity: str, connection=None) -> int:
        identity_id = self.store.identity_id(identity, connection)
        if identity_id is None:
            raise GalleryError(f"identity {identity!r} is not enrolled")
        return identity_id

    # ----- queries -------------------------------------------------------------------------------
    def list(self) -> list[dict]:
        rows = self.store.connection.execute(
            "SELECT i.name, COUNT(t.id), i.metadata, i.created FROM identities i LEFT JOIN templates t "
            "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name").fetchall()
        return [{"identity": n, "templates": c, "metadata": json.loads(m), "created": t} for n, c, m, t in rows]

    def stats(self) -> dict:
        identities = self.store.connection.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
        templates = self.store.connection.execute("SELECT COUNT(*) FROM templates").fetchone()[0]
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {"identities": identities, "templates": templates, "indexed_vectors": len(self.index),
                "embedding_dim": self.dim, "template_policy": self.policy, "index_factory": self.index.factory,
                "backend": self.backend["name"],
                "embedder": self.fingerprint["fingerprint"], "threshold": self.store.get("threshold"),
                "generation": self.store.generation(), "bytes_on_disk": size,
                "bytes_per_identity": size / identities if identities else None}

    def audit_log(self) -> list[dict]:
        rows = self.store.connection.execute("SELECT time, action, identity, detail FROM audit ORDER BY id").fetchall()
        return [{"time": t, "action": a, "identity": i, "detail": json.loads(d)} for t, a, i, d in rows]

    def _threshold(self, threshold: float | None) -> tuple[float | None, dict]:
        if threshold is not None:
            return float(threshold), {"source": "given"}
        stored = self.store.get("threshold")
        if not stored:
            return None, {"source": "none: run calibrate or pass a threshold"}
        return stored["threshold"], {k: v for k, v in stored.items() if k != "threshold"}

    def verify(self, probe, identity: str, threshold: float | None = None) -> Decision:
        """1:1: the probe's best score against `identity`'s templates (or its mean template)."""
        self._refresh()
        identity_id = self._require(identity)
        embedding = self.resolve([probe])[0].embedding
        templates = self.store.templates_of(identity_id)
        if self.policy == "mean":
            mean = templates.mean(0)
            score = float(embedding @ (mean / np.linalg.norm(mean)))
        else:
            score = float((templates @ embedding).max())
        value, source = self._threshold(threshold)
        return Decision(identity, score, value, None if value is None else score >= value, source)

    def identify(self, probe, k: int = 5, threshold: float | None = None) -> IdentifyResult:
        return self.identify_many([probe], k, threshold)[0]

    def identify_many(self, probes, k: int = 5, threshold: float | None = None) -> list[IdentifyResult]:
        """1:N open set, batched: top-k identities per probe (identity score = best template)."""
        if k < 1:
            raise GalleryError(f"k must be >= 1, got {k}")
        self._refresh()
        queries = np.stack([s.embedding for s in self.resolve(probes)]) if len(probes) else np.zeros((0, self.dim))
        value, source = self._threshold(threshold)
        searched = k if self.policy == "mean" else min(len(self.index), max(4 * k, k + 16))
        while True:
            scores, ids = self.index.search(queries, searched)
            candidates = [self._top_identities(row_scores, row_ids, k) for row_scores, row_ids in zip(scores, ids)]
            if searched >= len(self.index) or all(len(c) >= min(k, len(self._names)) for c in candidates):
                break
            searched = min(len(self.index), searched * 4)
        results = []
        for top in candidates:
            best = top[0] if top else (UNKNOWN, float("-inf"))
            known = value is None or best[1] >= value
            results.append(IdentifyResult(best[0] if known and top else UNKNOWN, top, value, source))
        return results

    def _top_identities(self, scores, ids, k) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for score, template in zip(scores, ids):
            if template < 0:
                continue
            name = self._names[self._owner[int(template)]]
            if name not in best:
                best[name] = float(score)
            if len(best) == k:
                break
        return list(best.items())

    # ----- moving galleries ----------------------------------------------------------------------
    def export(self, file: str | Path) -> Path:
        """Every identity and template (embeddings included) and the gallery's settings, in one .npz."""
        rows = self.store.connection.execute(
            "SELECT i.name, i.metadata, t.source, t.file_hash, t.quality, t.embedding FROM templates t "
            "JOIN identities i ON i.id = t.identity_id ORDER BY t.id").fetchall()
        settings = {key: self.store.get(key) for key in ("embedder", "template_policy", "index_factory", "threshold")}
        file = Path(file)
        np.savez(file, identities=np.array([r[0] for r in rows], dtype=str),
                 metadata=np.array([r[1] for r in rows], dtype=str),
                 sources=np.array([r[2] or "" for r in rows], dtype=str), hashes=np.array([r[3] or "" for r in rows], dtype=str),
                 qualities=np.array([np.nan if r[4] is None else r[4] for r in rows], dtype=np.float64),
                 embeddings=np.stack([np.frombuffer(r[5], np.float32) for r in rows]) if rows else np.zeros((0, self.dim)),
                 settings=np.array(json.dumps(settings)))
        return file

    def import_(self, file: str | Path) -> dict[str, dict]:
        """Merge an exported gallery into this one (same embedder fingerprint); duplicates are skipped."""
        with np.load(file, allow_pickle=False) as data:
            settings = json.loads(str(data["settings"]))
            if settings["embedder"] != self.fingerprint:
                raise GalleryError(f"{file} was made with embedder {settings['embedder']['fingerprint']}, this gallery "
                                   f"uses {self.fingerprint['fingerprint']}")
            batches: dict[str, list] = {}
            metadata: dict[str, dict] = {}
            for name, meta, source, file_hash, quality, vector in zip(
                    data["identities"], data["metadata"], data["sources"], data["hashes"], data["qualities"],
                    data["embeddings"]):
                batches.setdefault(str(name), []).append(Sample(self._check_embedding(vector, f"{file}: {name}"),
                                                                str(source) or None, str(file_hash) or None,
                                                                None if np.isnan(quality) else float(quality)))
                metadata[str(name)] = json.loads(str(meta))
        return self.enroll_many(batches, metadata) if batches else {}

    def reembed(self, embedder, preprocessor=None) -> dict:
        """Migrate to another embedder: every template is embedded again from its source image, and
        the gallery takes the new fingerprint. Refused, changing nothing, if any source is unreadable."""
        rows = self.store.connection.execute("SELECT id, source FROM templates ORDER BY id").fetchall()
        missing = [f"template {i}" if not source else source for i, source in rows
                   if not source or not Path(source).is_file()]
        if missing:
            raise GalleryError(f"{len(missing)} template(s) have no readable source image to re-embed, "
                               f"e.g. {missing[:3]}; the gallery is unchanged")
        previous = (self.embedder, self.preprocessor, self.dim)
        self.embedder, self.preprocessor = embedder, preprocessor
        self.dim = int(embedder.embedding_dim)
        try:
            updated = [(self._from_image(source, source).embedding.tobytes(), i) for i, source in rows]
        except GalleryError:
            self.embedder, self.preprocessor, self.dim = previous
            raise
        with self._writer():
            with self.store.transaction() as connection:
                connection.executemany("UPDATE templates SET embedding = ? WHERE id = ?", updated)
                self.store.set(connection, "embedder", _fingerprint_of(embedder))
                self.store.set(connection, "threshold", None)
                self.store.audit(connection, "reembed", None, {"templates": len(updated), "embedder": embedder.fingerprint})
                generation = self.store.bump(connection)
            self.fingerprint = _fingerprint_of(embedder)
            self.index = self._new_index()
            self._commit_index(generation, vectors_changed=True)
        return {"templates": len(updated), "embedder": embedder.fingerprint, "threshold": "cleared: calibrate again"}

    # ----- thresholds ----------------------------------------------------------------------------
    def calibrate(self, scores, is_same, target_far: float = 1e-3, description: str = "") -> dict:
        """Set the decision threshold from genuine/impostor pair scores (e.g. an evaluation run):
        the most permissive threshold whose FAR does not exceed `target_far`."""
        from evaluation.verification import threshold_at_far

        result = threshold_at_far(scores, is_same, target_far)
        if not np.isfinite(result["threshold"]):
            raise GalleryError(f"{int((~np.asarray(is_same, bool)).sum())} impostor pairs cannot measure FAR "
                               f"{target_far}: at least {int(np.ceil(1 / target_far))} are needed")
        source = {"source": "calibrate", "target_far": target_far, "far": result["far"], "tar": result["tar"],
                  "pairs": int(len(is_same)), "description": description, "time": time.time()}
        self.set_threshold(result["threshold"], source)
        return {"threshold": result["threshold"], **source}
