"""`Gallery`: enrolled identities for 1:1 verification and 1:N open-set identification.

A gallery is a directory: `gallery.db` (SQLite, the source of truth: identities, templates with
their embeddings, thresholds, the embedder's fingerprint and an append-only audit log), a snapshot of
the FAISS index (or a Milvus collection: `gallery.index.milvus_index`), and `.lock`, which serialises
writers while readers go on.

Probes and enrollment samples are images (run through the shared `FacePreprocessor` and the gallery's embedder) or
embeddings; `SampleResolver` turns them into validated samples. Every mutation validates all its inputs first, then
commits one SQLite transaction (`MetadataStore` owns all SQL), then updates the in-memory index in place
(`gallery.index.live_index`: replay of the committed changes, snapshots, checksums): a crash at any point loses
nothing that was committed. Moving galleries (export, import, re-embedding) lives in `gallery.transfer`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from faceid.gallery.index.faiss_index import VectorIndex
from faceid.gallery.index.live_index import LiveIndex, log
from faceid.gallery.index.milvus_index import COLLECTION, MilvusIndex, describe_backend
from faceid.gallery.names import UNKNOWN, refuse_name_clash, validate_identity_name
from faceid.gallery.records import Decision, GalleryError, IdentifyResult, NotEnrolled, Sample
from faceid.gallery.samples.kept_images import keep_images
from faceid.gallery.samples.resolver import SampleResolver, embedder_fingerprint
from faceid.gallery.store.database import MetadataStore
from faceid.gallery.store.writer_lock import writer_lock
from faceid.gallery.threshold_policy import DEFAULT_POLICY, decide_threshold
from faceid.gallery.transfer import export_gallery, import_gallery, reembed_gallery

from faceid.arrays import l2_normalize

TEMPLATE_POLICIES = ("all", "mean")


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
        self.threshold_override = DEFAULT_POLICY  # how far a request may move the calibrated threshold
        self.live = LiveIndex(self.path, self.store, self._new_index(), per_identity=self.policy == "mean")
        self._wrote = False
        with self.store.damage_reported():
            self._refresh()

    @property
    def index(self):
        return self.live.index

    @property
    def _names(self) -> dict[int, str]:
        return self.live.names

    @property
    def _owner(self) -> dict[int, int]:
        return self.live.owner

    def _new_index(self):
        parameters = self.store.get("search_parameters")
        if self.backend["name"] == "milvus":
            return MilvusIndex(self.dim, self.backend["uri"], self.backend.get("index_type", "FLAT"), parameters,
                               self.backend.get("collection", COLLECTION))
        return VectorIndex(self.dim, self.store.get("index_factory"), parameters, self.gpu, self.store)

    # ----- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, embedder=None, *, fingerprint: dict | None = None, index_factory: str = "Flat",
               template_policy: str = "all", search_parameters: dict | None = None, preprocessor=None,
               backend: str = "faiss", milvus_uri: str | None = None) -> Gallery:
        """A new, empty gallery for `embedder` (or for embeddings described by `fingerprint`).

        `backend="milvus"` keeps the vectors in Milvus: `milvus_uri` names a server (`http://host:19530`), or,
        by default, a Milvus Lite file inside the gallery directory; `index_factory` is then Flat, auto or a
        Milvus index type (`gallery.index.milvus_index.milvus_index_type`)."""
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
        if backend == "faiss":  # fails early on a bad factory string (or Milvus index type)
            VectorIndex(int(description["embedding_dim"]), index_factory)
        backend_description = ({"name": "faiss"} if backend == "faiss"
                               else describe_backend(path, milvus_uri, index_factory))
        path.mkdir(parents=True, exist_ok=True)
        store = MetadataStore(path / "gallery.db", create=True)
        with store.transaction() as connection:
            store.set(connection, "embedder", description)
            store.set(connection, "index_factory", index_factory)
            store.set(connection, "backend", backend_description)
            store.set(connection, "template_policy", template_policy)
            store.set(connection, "search_parameters", search_parameters or {})
            store.set(connection, "generation", 0)
            store.audit(connection, "create", None, {"index_factory": index_factory, "policy": template_policy})
        store.close()
        gallery = cls(path, embedder, preprocessor)
        gallery.snapshot()
        return gallery

    def close(self) -> None:
        """Close, first writing the index snapshot if this gallery wrote and one is due."""
        self.live.wait()
        if self._wrote and self.live.snapshot_due():
            self.snapshot()
        self.index.close()
        self.store.close()

    def snapshot(self) -> None:
        """Write the index snapshot now if anything changed since the last one: the next open replays nothing."""
        self.live.wait()
        with writer_lock(self.path):
            self._refresh()
            self.live.write_snapshot(only_if_stale=True)

    def check(self) -> dict:
        """Compare the in-memory index (and the snapshot on disk) with SQLite, vector by vector."""
        return self.live.check()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _writer(self):
        """The writer lock, with the index caught up before the body and after its commit (then
        `LiveIndex.after_write`: the WAL checkpoint and the snapshot policy)."""
        with writer_lock(self.path):
            self._refresh()
            self.live.before_write()
            yield
            self._wrote = True
            self._refresh(own_write=True)
            self.live.after_write(self._new_index)

    def _refresh(self, own_write: bool = False) -> None:
        """Bring the in-memory index to the store's generation (`LiveIndex.refresh`). Refused when another
        writer re-embedded the gallery since it was opened: its vectors no longer match this embedder."""
        if not own_write and self.store.generation() != self.live.generation:
            stored = self.store.get("embedder")
            if stored != self.fingerprint:
                raise GalleryError(f"{self.path} was re-embedded with embedder {stored['fingerprint']} after it was "
                                   f"opened with {self.fingerprint['fingerprint']}; reopen it with the new embedder")
        self.live.refresh(own_write)

    # ----- enroll, remove, rename ----------------------------------------------------------------
    def resolve(self, items, names: list[str] | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises."""
        return self.resolver.resolve(items, names)

    def enroll(self, identity: str, items, metadata: dict | None = None) -> dict:
        """Add samples (images or embeddings) to `identity`, creating it if new. Re-enrolling appends;
        a sample whose file (or embedding) hash the identity already has is reported and skipped."""
        name = validate_identity_name(identity)
        return self.enroll_many({name: list(items)}, {name: metadata or {}})[name]

    def enroll_many(self, batches: dict[str, list], metadata: dict[str, dict] | None = None) -> dict[str, dict]:
        """Several identities in one transaction and one index write."""
        names = {identity: validate_identity_name(identity) for identity in batches}
        resolved = {identity: keep_images(self, self.resolve(items)) for identity, items in batches.items()}
        results = {}
        with self._writer():
            with self.store.transaction() as connection:
                now = time.time()
                for identity, samples in resolved.items():
                    identity_id = self.store.identity_id(names[identity], connection)
                    if identity_id is None:
                        refuse_name_clash(self.store, names[identity], connection)
                        identity_id = self.store.add_identity(connection, names[identity],
                                                              (metadata or {}).get(identity, {}), now)
                    known = self.store.file_hashes(connection, identity_id)
                    added, duplicates = 0, []
                    for sample in samples:
                        if sample.file_hash in known:
                            duplicates.append(sample.source or sample.file_hash[:12])
                            continue
                        known.add(sample.file_hash)
                        self.store.add_template(connection, identity_id, sample, now)
                        added += 1
                    self.store.audit(connection, "enroll", identity, {"added": added, "duplicates": duplicates})
                    results[identity] = {"added": added, "duplicates": duplicates}
                self.store.bump(connection)
        return results

    def remove(self, identity: str) -> int:
        with self._writer():
            with self.store.transaction() as connection:
                removed = self.store.remove_identity(connection, self._require(identity, connection))
                self.store.audit(connection, "remove", identity, {"templates": len(removed)})
                self.store.bump(connection)
        return len(removed)

    def rename(self, identity: str, new_name: str) -> None:
        new_name = validate_identity_name(new_name)
        with self._writer():
            with self.store.transaction() as connection:
                identity_id = self._require(identity, connection)
                if self.store.identity_id(new_name, connection) is not None:
                    raise GalleryError(f"identity {new_name!r} already exists")
                if self.store.name_taken(new_name, connection) not in (None, identity):
                    refuse_name_clash(self.store, new_name, connection)
                self.store.rename_identity(connection, identity_id, new_name)
                self.store.audit(connection, "rename", identity, {"to": new_name})
                self.store.bump(connection)

    def _require(self, identity: str, connection=None) -> int:
        identity_id = self.store.identity_id(identity, connection)
        if identity_id is None:
            raise NotEnrolled(f"identity {identity!r} is not enrolled")
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
        size = len(self.index)
        widest = min(size, getattr(self.index, "max_results", size))  # Milvus: at most 16,384 results a search
        searched = min(widest, k if self.policy == "mean" else max(4 * k, k + 16))
        while True:
            scores, ids = self.index.search(queries, searched)
            candidates = [self._top_identities(row_scores, row_ids, k)
                          for row_scores, row_ids in zip(scores, ids, strict=True)]
            if searched >= widest or all(len(c) >= min(k, len(self._names)) for c in candidates):
                break
            searched = min(widest, searched * 4)
        indexed = len(set(self._owner.values())) if widest < size else 0  # a result cap may cut k short: say so
        cut = [len(top) < min(k, indexed) for top in candidates]  # (the listed ones are still the best, in order)
        if any(cut):
            log.warning("%s: the best %d templates (the index's cap a search) hold fewer than k=%d identities "
                        "for %d probe(s): they get the best ones, fewer than k (IdentifyResult.complete False)",
                        self.path, widest, k, sum(cut))
        results = []
        for top, short in zip(candidates, cut, strict=True):
            best = top[0] if top else (UNKNOWN, float("-inf"))
            known = value is None or best[1] >= value
            results.append(IdentifyResult(best[0] if known and top else UNKNOWN, top, value, source, not short))
        return results

    def _top_identities(self, scores, ids, k) -> list[tuple[str, float]]:
        best: dict[str, float] = {}
        for score, template in zip(scores, ids, strict=True):
            if int(template) not in self._owner:  # -1 (no hit), or written since by another user of a shared index
                continue
            name = self._names[self._owner[int(template)]]
            if name not in best:
                best[name] = float(score)
            if len(best) == k:
                break
        return list(best.items())

    # ----- thresholds ----------------------------------------------------------------------------
    def _threshold(self, threshold: float | None) -> tuple[float | None, dict]:
        """The request's threshold under `threshold_override` (gallery.threshold_policy), or the calibrated one."""
        return decide_threshold(threshold, self.store.get("threshold") or None, self.threshold_override)

    def set_threshold(self, threshold: float, source: dict) -> None:
        with self._writer(), self.store.transaction() as connection:
            self.store.set(connection, "threshold", {"threshold": float(threshold), **source})
            self.store.audit(connection, "threshold", None, {"threshold": float(threshold), **source})

    def calibrate(self, scores, is_same, target_far: float = 1e-3, description: str = "") -> dict:
        """Set the decision threshold from genuine/impostor pair scores (e.g. an evaluation run):
        the most permissive threshold whose FAR does not exceed `target_far`."""
        from faceid.evaluation.verification import threshold_at_far

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
        size, wal = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()), self.path / "gallery.db-wal"
        return {"identities": identities, "templates": templates, "indexed_vectors": len(self.index),
                "embedding_dim": self.dim, "template_policy": self.policy, "index_factory": self.index.factory,
                "backend": self.backend["name"],
                "embedder": self.fingerprint["fingerprint"], "threshold": self.store.get("threshold"),
                "generation": self.store.generation(), "bytes_on_disk": size,
                "bytes_per_identity": size / identities if identities else None,
                "bytes_per_template": size / templates if templates else None,
                "wal_bytes": wal.stat().st_size if wal.exists() else 0,
                "index": self.live.state()}

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
