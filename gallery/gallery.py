"""`Gallery`: enrolled identities for 1:1 verification and 1:N open-set identification.

A gallery is a directory: `gallery.db` (SQLite, the source of truth: identities, templates with
their embeddings, thresholds, the embedder's fingerprint and an append-only audit log), the FAISS
index of the current generation, and `.lock`, which serialises writers while readers go on.

Probes and enrollment samples are images (run through the shared `FacePreprocessor` and the
gallery's embedder) or embeddings; `SampleResolver` turns them into validated samples. Every
mutation validates all its inputs first, then commits one SQLite transaction (`MetadataStore` owns
all SQL), then writes the index atomically: a crash at any point loses nothing that was committed,
and a stale or missing index is rebuilt from SQLite when the gallery is opened. Moving galleries
(export, import, re-embedding) lives in `gallery.transfer`.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from faceid.arrays import l2_normalize
from gallery.index import VectorIndex
from gallery.records import Decision, GalleryError, IdentifyResult, Sample
from gallery.resolver import SampleResolver, embedder_fingerprint
from gallery.store import MetadataStore
from gallery.transfer import export_gallery, import_gallery, reembed_gallery

TEMPLATE_POLICIES = ("all", "mean")
UNKNOWN = "unknown"


class Gallery:
    def __init__(self, path: Path, embedder=None, preprocessor=None, gpu: bool = False):
        self.path = Path(path)
        self.store = MetadataStore(self.path / "gallery.db")
        self.fingerprint = self.store.get("embedder")
        if self.fingerprint is None:
            raise GalleryError(f"{self.path} is not a faceid gallery (no embedder fingerprint); create it first")
        if embedder is not None and embedder_fingerprint(embedder) != self.fingerprint:
            raise GalleryError(f"{self.path} was enrolled with embedder {self.fingerprint['fingerprint']} "
                               f"(dim {self.fingerprint['embedding_dim']}); this embedder is {embedder.fingerprint} "
                               f"(dim {embedder.embedding_dim}). Use `reembed` to migrate the gallery.")
        self.dim = int(self.fingerprint["embedding_dim"])
        self.resolver = SampleResolver(self.dim, embedder, preprocessor)
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
        return VectorIndex(self.dim, self.store.get("index_factory"), parameters, self.gpu, self.store)

    # ----- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, embedder=None, *, fingerprint: dict | None = None, index_factory: str = "Flat",
               template_policy: str = "all", search_parameters: dict | None = None, preprocessor=None,
               backend: str = "faiss", milvus_uri: str | None = None) -> Gallery:
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
        description = embedder_fingerprint(embedder) if embedder is not None else dict(fingerprint)
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

    def _refresh(self, persist: bool = False) -> None:
        """Bring the in-memory index to the store's generation: load its file, or rebuild it from SQLite
        (and, when `persist` — only under the writer lock — write the rebuilt index). Refused when another
        writer re-embedded the gallery since it was opened: its vectors no longer match this embedder."""
        generation = self.store.generation()
        if generation == self._loaded_generation:
            return
        stored = self.store.get("embedder")
        if stored != self.fingerprint:
            raise GalleryError(f"{self.path} was re-embedded with embedder {stored['fingerprint']} after it was "
                               f"opened with {self.fingerprint['fingerprint']}; open it again with the new embedder")
        if not self.index.load(self.path, generation, self.store.index_ids(per_identity=self.policy == "mean")):
            self.index.build(*self.store.index_vectors(per_identity=self.policy == "mean"))
            if persist:
                self.index.save(self.path, generation)
        self._load_names()
        self._loaded_generation = generation

    def _load_names(self) -> None:
        """Map index ids to identity names."""
        self._names = self.store.identity_names()
        self._owner = self.store.template_owners() if self.policy == "all" else {i: i for i in self._names}

    def _commit_index(self, generation: int, added: tuple | None = None, removed: np.ndarray | None = None,
                      vectors_changed: bool = True) -> None:
        """Write the index of the committed `generation`: kept or updated in place where the index type
        and template policy allow it (added template ids and vectors, removed template ids), else rebuilt."""
        in_place = not vectors_changed or self.policy == "all" and (
            (added is not None and self.index.add(*added)) or (removed is not None and self.index.remove(removed)))
        if not in_place:
            self.index.build(*self.store.index_vectors(per_identity=self.policy == "mean"))
        self.index.save(self.path, generation)
        self._load_names()
        self._loaded_generation = generation

    def _adopt_embedder(self, resolver: SampleResolver, generation: int) -> None:
        """After a committed re-embedding (under the writer lock): take the new embedder and rebuild the index."""
        self.resolver, self.dim = resolver, resolver.dim
        self.fingerprint = self.store.get("embedder")
        self.index = self._new_index()
        self._commit_index(generation)

    # ----- enroll, remove, rename ----------------------------------------------------------------
    def resolve(self, items, names: list[str] | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises."""
        return self.resolver.resolve(items, names)

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
                        identity_id = self.store.add_identity(connection, identity, (metadata or {}).get(identity, {}),
                                                              now)
                    known = self.store.file_hashes(connection, identity_id)
                    added, duplicates = 0, []
                    for sample in samples:
                        if sample.file_hash in known:
                            duplicates.append(sample.source or sample.file_hash[:12])
                            continue
                        known.add(sample.file_hash)
                        new_ids.append(self.store.add_template(connection, identity_id, sample, now))
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
                removed = self.store.remove_identity(connection, self._require(identity, connection))
                self.store.audit(connection, "remove", identity, {"templates": len(removed)})
                generation = self.store.bump(connection)
            self._commit_index(generation, removed=removed)
        return len(removed)

    def rename(self, identity: str, new_name: str) -> None:
        if not new_name or new_name == UNKNOWN:
            raise GalleryError(f"identity name {new_name!r} is not allowed")
        with self._writer():
            with self.store.transaction() as connection:
                identity_id = self._require(identity, connection)
                if self.store.identity_id(new_name, connection) is not None:
                    raise GalleryError(f"identity {new_name!r} already exists")
                self.store.rename_identity(connection, identity_id, new_name)
                self.store.audit(connection, "rename", identity, {"to": new_name})
                generation = self.store.bump(connection)
            self._commit_index(generation, vectors_changed=False)

    def _require(self, identity: str, connection=None) -> int:
        identity_id = self.store.identity_id(identity, connection)
        if identity_id is None:
            raise GalleryError(f"identity {identity!r} is not enrolled")
        return identity_id

    # ----- verify and identify -------------------------------------------------------------------
    def verify(self, probe, identity: str, threshold: float | None = None) -> Decision:
        """1:1: the probe's best score against `identity`'s templates (or its mean template)."""
        self._refresh()
        identity_id = self._require(identity)
        embedding = self.resolve([probe])[0].embedding
        templates = self.store.templates_of(identity_id)
        if not len(templates):
            raise GalleryError(f"identity {identity!r} has no templates to verify against; enroll samples first")
        if self.policy == "mean":
            score = float(embedding @ l2_normalize(templates.mean(0)))
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
            candidates = [self._top_identities(row_scores, row_ids, k)
                          for row_scores, row_ids in zip(scores, ids, strict=True)]
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
        for score, template in zip(scores, ids, strict=True):
            if template < 0:
                continue
            name = self._names[self._owner[int(template)]]
            if name not in best:
                best[name] = float(score)
            if len(best) == k:
                break
        return list(best.items())

    # ----- thresholds ----------------------------------------------------------------------------
    def _threshold(self, threshold: float | None) -> tuple[float | None, dict]:
        if threshold is not None:
            return float(threshold), {"source": "given"}
        stored = self.store.get("threshold")
        if not stored:
            return None, {"source": "none: run calibrate or pass a threshold"}
        return stored["threshold"], {k: v for k, v in stored.items() if k != "threshold"}

    def set_threshold(self, threshold: float, source: dict) -> None:
        with self._writer(), self.store.transaction() as connection:
            self.store.set(connection, "threshold", {"threshold": float(threshold), **source})
            self.store.audit(connection, "threshold", None, {"threshold": float(threshold), **source})

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

    # ----- listing and stats ---------------------------------------------------------------------
    def list(self) -> list[dict]:
        return self.store.identity_summaries()

    def audit_log(self) -> list[dict]:
        return self.store.audit_entries()

    def stats(self) -> dict:
        identities, templates = self.store.counts()
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
        return {"identities": identities, "templates": templates, "indexed_vectors": len(self.index),
                "embedding_dim": self.dim, "template_policy": self.policy, "index_factory": self.index.factory,
                "backend": self.backend["name"], "index": {"tuning": getattr(self.index, "tuning", None)},
                "embedder": self.fingerprint["fingerprint"], "threshold": self.store.get("threshold"),
                "generation": self.store.generation(), "bytes_on_disk": size,
                "bytes_per_identity": size / identities if identities else None}

    # ----- moving galleries (gallery.transfer) ---------------------------------------------------
    def export(self, file: str | Path) -> Path:
        """Every identity and template (embeddings included) and the gallery's settings, in one .npz."""
        return export_gallery(self, file)

    def import_(self, file: str | Path) -> dict[str, dict]:
        """Merge an exported gallery into this one (same embedder fingerprint); duplicates are skipped."""
        return import_gallery(self, file)

    def reembed(self, embedder, preprocessor=None) -> dict:
        """Migrate to another embedder (see `gallery.transfer.reembed_gallery`)."""
        return reembed_gallery(self, embedder, preprocessor)
