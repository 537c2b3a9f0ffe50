"""`Gallery`: enrolled identities for 1:1 verification and 1:N open-set identification.

A gallery is a directory: `gallery.db` (SQLite, the source of truth: identities, templates with their embeddings,
thresholds, the embedder's fingerprint and an append-only audit log), the vectors in a backend
(`gallery.index.backend`: a FAISS index snapshotted in the directory, or a Milvus collection), and `.lock`, which
serialises writers while readers go on.

Probes and enrolment samples are images (run through the shared `FacePreprocessor` and the gallery's embedder) or
embeddings; the gallery's `resolver` turns them into validated samples. Every mutation is one unit of work
(`writing()`): all its inputs validated first, the writer lock held, one SQLite transaction committed, then the
in-memory index updated in place (`gallery.index.live_index`: replay of committed changes, snapshots, checksums).
A crash at any point loses nothing that was committed. Other modules (transfer, tuning, kept images, the service)
work through this public API: `writing()`, `reading()`, `setting()`, `resolver` and `index`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from faceid.arrays import l2_normalize
from faceid.data.images import DEFAULT_MAX_PIXELS
from faceid.gallery.index.backend import DEFAULT_BACKEND, build_backend, describe_backend
from faceid.gallery.index.live_index import LiveIndex, log
from faceid.gallery.names import UNKNOWN, refuse_name_clash, validate_identity_name
from faceid.gallery.records import Decision, GalleryError, IdentifyResult, NotEnrolled, Sample
from faceid.gallery.samples.enrolment_check import EnrolmentCheck
from faceid.gallery.samples.kept_images import keep_images
from faceid.gallery.samples.resolver import SampleResolver, embedder_fingerprint
from faceid.gallery.search import top_identities
from faceid.gallery.store.database import MetadataStore
from faceid.gallery.store.writer_lock import writer_lock
from faceid.gallery.threshold_policy import (
    DEFAULT_POLICY,
    decide_threshold,
    threshold_in_force,
)

TEMPLATE_POLICIES = ("all", "mean")


class Gallery:
    def __init__(self, path: Path, embedder=None, preprocessor=None, gpu: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.path = Path(path)
        self._store = MetadataStore(self.path / "gallery.db")
        self.fingerprint = self._store.get("embedder")
        if self.fingerprint is None:
            raise GalleryError(f"{self.path} is not a faceid gallery (no embedder fingerprint); create it first")
        if embedder is not None and embedder_fingerprint(embedder) != self.fingerprint:
            raise GalleryError(f"{self.path} was enrolled with embedder {self.fingerprint['fingerprint']} "
                               f"(dim {self.fingerprint['embedding_dim']}); this embedder is {embedder.fingerprint} "
                               f"(dim {embedder.embedding_dim}). Use `reembed` to migrate the gallery.")
        self.dim = int(self.fingerprint["embedding_dim"])
        self._resolver = SampleResolver(self.dim, embedder, preprocessor, max_pixels)
        self.policy = self._store.get("template_policy")
        self.backend = self._store.get("backend", {"name": DEFAULT_BACKEND})
        self.gpu = gpu
        self.threshold_override = DEFAULT_POLICY  # how far a request may move the calibrated threshold
        self.enrolment_check = EnrolmentCheck()  # what an enrolled photo must pass (samples.enrolment_check)
        self._live = LiveIndex(self.path, self._store, self._new_index(), per_identity=self.policy == "mean")
        self._wrote = False
        self._writing = False
        with self._store.damage_reported():
            self._refresh()

    @property
    def index(self):
        """The vector backend (`gallery.index.backend.VectorBackend`), kept at the store's generation."""
        return self._live.index

    @property
    def resolver(self) -> SampleResolver:
        """Images or embeddings -> validated samples, with the gallery's embedder and preprocessor."""
        return self._resolver

    def _new_index(self):
        return build_backend(self.backend, self.dim, self._store, self.gpu)

    # ----- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, embedder=None, *, fingerprint: dict | None = None, index_factory: str = "Flat",
               template_policy: str = "all", search_parameters: dict | None = None, preprocessor=None,
               backend: str = DEFAULT_BACKEND, backend_options: dict | None = None) -> Gallery:
        """A new, empty gallery for `embedder` (or for embeddings described by `fingerprint`).

        `backend` names where the vectors live (`gallery.index.backend.BACKENDS`), with its `backend_options`
        (Milvus: `uri`, a server such as `http://host:19530`; by default a Milvus Lite directory inside the
        gallery); `index_factory` is a FAISS factory string, `auto`, or for Milvus Flat, auto or an index type."""
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
        backend_description = describe_backend(backend, path, int(description["embedding_dim"]), index_factory,
                                               backend_options)
        path.mkdir(parents=True, exist_ok=True)
        store = MetadataStore(path / "gallery.db", create=True)
        with store.transaction() as write:
            for key, value in (("embedder", description), ("index_factory", index_factory),
                               ("backend", backend_description), ("template_policy", template_policy),
                               ("search_parameters", search_parameters or {}), ("generation", 0)):
                write.set(key, value)
            write.audit("create", None, {"index_factory": index_factory, "policy": template_policy})
        store.close()
        gallery = cls(path, embedder, preprocessor)
        gallery.snapshot()
        return gallery

    def close(self) -> None:
        """Close, first writing the index snapshot if this gallery wrote and one is due."""
        self._live.wait()
        if self._wrote and self._live.snapshot_due():
            self.snapshot()
        self.index.close()
        self._store.close()

    def snapshot(self) -> None:
        """Write the index snapshot now if anything changed since the last one: the next open replays nothing."""
        self._live.wait()
        with writer_lock(self.path):
            self._refresh()
            self._live.write_snapshot(only_if_stale=True)

    def rebuild_index(self, reason: str) -> None:
        """Rebuild the index from gallery.db now, under the writer lock (logged with `reason`); its snapshot is
        written by `snapshot()`, the next write or `close()`."""
        with writer_lock(self.path):
            self._refresh()
            self._live.rebuild(reason)
            self._wrote = True

    def check(self) -> dict:
        """Compare the in-memory index (and the snapshot on disk) with SQLite, vector by vector."""
        return self._live.check()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- units of work -------------------------------------------------------------------------
    @contextmanager
    def writing(self, embedder=None, preprocessor=None):
        """One unit of work: the writer lock, the index caught up with the store, one SQLite transaction whose
        `StoreWrite` is yielded, then, once it commits, the index updated in place (and the snapshot policy
        applied); an error inside rolls everything back. With `embedder`, the work re-embeds the gallery: the
        transaction records the new embedder's fingerprint and, on commit, the gallery takes the embedder (and
        `preprocessor`) and rebuilds its index."""
        if self._writing:
            raise GalleryError(f"{self.path}: a unit of work is already open on this gallery; write inside it")
        with writer_lock(self.path):
            self._refresh()
            self._live.before_write()
            self._writing = True
            try:
                with self._store.transaction() as write:
                    if embedder is not None:
                        write.set("embedder", embedder_fingerprint(embedder))
                        write.bump()
                    yield write
            finally:
                self._writing = False
            self._wrote = True
            if embedder is not None:
                self._adopt(embedder, preprocessor)
            else:
                self._refresh(own_write=True)
            self._live.after_write(self._new_index)

    @contextmanager
    def reading(self):
        """One consistent view of gallery.db across several reads: yields the (read-only) `MetadataStore`."""
        with self._store.reading():
            yield self._store

    def setting(self, key: str, default=None):
        """One of the gallery's stored settings (`model`, `aligned`, `keep_images`, `threshold`...)."""
        return self._store.get(key, default)

    def _adopt(self, embedder, preprocessor) -> None:
        """After a committed re-embedding: the new embedder, its dimension and a new index built from the store."""
        self.fingerprint = self._store.get("embedder")
        self.dim = int(self.fingerprint["embedding_dim"])
        self._resolver = SampleResolver(self.dim, embedder, preprocessor, self._resolver.max_pixels)
        self._live.replace_index(self._new_index(), "the gallery was re-embedded")

    def _refresh(self, own_write: bool = False) -> None:
        """Bring the in-memory index to the store's generation (`LiveIndex.refresh`). Refused when another
        writer re-embedded the gallery since it was opened: its vectors no longer match this embedder."""
        if not own_write and self._store.generation() != self._live.generation:
            stored = self._store.get("embedder")
            if stored != self.fingerprint:
                raise GalleryError(f"{self.path} was re-embedded with embedder {stored['fingerprint']} after it was "
                                   f"opened with {self.fingerprint['fingerprint']}; reopen it with the new embedder")
        self._live.refresh(own_write)

    # ----- enroll, remove, rename ----------------------------------------------------------------
    def resolve(self, items, names: list[str] | None = None) -> list[Sample]:
        """Images (paths or RGB arrays) or embeddings -> validated samples; the first bad one raises."""
        return self._resolver.resolve(items, names)

    def enroll(self, identity: str, items, metadata: dict | None = None, labels: list[str] | None = None) -> dict:
        """Add samples (images or embeddings) to `identity`, creating it if new. Re-enrolling appends;
        a sample whose file (or embedding) hash the identity already has is reported and skipped. `labels` name
        the items in errors and duplicates (default: a sample's source, else its hash's first 12 digits)."""
        name = validate_identity_name(identity)
        return self.enroll_many({name: list(items)}, {name: metadata or {}}, {name: labels} if labels else None)[name]

    def enroll_many(self, batches: dict[str, list], metadata: dict[str, dict] | None = None,
                    labels: dict[str, list[str]] | None = None) -> dict[str, dict]:
        """Several identities in one transaction and one index write; `labels`: each batch's, as `enroll` takes."""
        names, labels = {identity: validate_identity_name(identity) for identity in batches}, labels or {}
        resolved = {identity: keep_images(self, self._resolver.resolve(items, labels.get(identity),
                                                                       self.enrolment_check))
                    for identity, items in batches.items()}
        results = {}
        with self.writing() as write:
            now = time.time()
            for identity, samples in resolved.items():
                identity_id = self._store.identity_id(names[identity])
                if identity_id is None:
                    refuse_name_clash(self._store, names[identity])
                    identity_id = write.add_identity(names[identity], (metadata or {}).get(identity, {}), now)
                known = self._store.file_hashes(identity_id)
                added, duplicates, named = 0, [], labels.get(identity)
                for position, sample in enumerate(samples):
                    if sample.file_hash in known:
                        duplicates.append(named[position] if named else sample.source or sample.file_hash[:12])
                        continue
                    known.add(sample.file_hash)
                    write.add_template(identity_id, sample, now)
                    added += 1
                write.audit("enroll", identity, {"added": added, "duplicates": duplicates})
                results[identity] = {"added": added, "duplicates": duplicates}
        return results

    def remove(self, identity: str) -> int:
        with self.writing() as write:
            removed = write.remove_identity(self._require(identity))
            write.audit("remove", identity, {"templates": len(removed)})
        return len(removed)

    def rename(self, identity: str, new_name: str) -> None:
        new_name = validate_identity_name(new_name)
        with self.writing() as write:
            identity_id = self._require(identity)
            if self._store.identity_id(new_name) is not None:
                raise GalleryError(f"identity {new_name!r} already exists")
            if self._store.name_taken(new_name) not in (None, identity):
                refuse_name_clash(self._store, new_name)
            write.rename_identity(identity_id, new_name)
            write.audit("rename", identity, {"to": new_name})

    def _require(self, identity: str) -> int:
        identity_id = self._store.identity_id(identity)
        if identity_id is None:
            raise NotEnrolled(f"identity {identity!r} is not enrolled")
        return identity_id

    # ----- verify and identify -------------------------------------------------------------------
    def verify(self, probe, identity: str, threshold: float | None = None) -> Decision:
        """1:1: the probe's best score against `identity`'s templates (or its mean template)."""
        self._refresh()
        identity_id = self._require(identity)
        sample = self.resolve([probe])[0]
        embedding = sample.embedding
        templates = self._store.templates_of(identity_id)
        if not len(templates):
            raise GalleryError(f"identity {identity!r} has no templates to verify against; enroll samples first")
        if self.policy == "mean":
            score = float(embedding @ l2_normalize(templates.mean(0)))
        else:
            score = float((templates @ embedding).max())
        value, source = self.decision_threshold(threshold)
        return Decision(identity, score, value, None if value is None else score >= value, source, sample.face)

    def identify(self, probe, k: int = 5, threshold: float | None = None, closed_set: bool = False) -> IdentifyResult:
        return self.identify_many([probe], k, threshold, closed_set)[0]

    def identify_many(self, probes, k: int = 5, threshold: float | None = None,
                      closed_set: bool = False) -> list[IdentifyResult]:
        """1:N open set, batched: top-k identities per probe (identity score = best template). The threshold is
        `threshold` (under `threshold_override`) or the gallery's; with none, it is refused (`NoThreshold`) unless
        `closed_set` asks for the best candidate whoever it is."""
        if k < 1:
            raise GalleryError(f"k must be >= 1, got {k}")
        self._refresh()
        samples = self.resolve(probes)
        queries = np.stack([s.embedding for s in samples]) if samples else np.zeros((0, self.dim))
        value, source = self.decision_threshold(threshold, closed_set)
        candidates, cut = top_identities(self.index, queries, k, self.policy == "mean", self._live.owner,
                                         self._live.names)
        if any(cut):
            log.warning("%s: the best %d templates (the index's cap a search) hold fewer than k=%d identities "
                        "for %d probe(s): they get the best ones, fewer than k (IdentifyResult.complete False)",
                        self.path, self.index.capabilities.max_results, k, sum(cut))
        results = []
        for top, short, sample in zip(candidates, cut, samples, strict=True):
            best = top[0] if top else (UNKNOWN, float("-inf"))
            known = value is None or best[1] >= value
            results.append(IdentifyResult(best[0] if known and top else UNKNOWN, top, value, source, not short,
                                          sample.face))
        return results

    # ----- thresholds ----------------------------------------------------------------------------
    def decision_threshold(self, threshold: float | None = None,
                           closed_set: bool = False) -> tuple[float | None, dict]:
        """The request's threshold under `threshold_override` (gallery.threshold_policy), or the gallery's."""
        return decide_threshold(threshold, self._store.get("threshold") or None, self.threshold_override, closed_set,
                                str(self.path))

    def set_threshold(self, threshold: float, source: dict) -> None:
        with self.writing() as write:
            write.set("threshold", {"threshold": float(threshold), **source})
            write.audit("threshold", None, {"threshold": float(threshold), **source})

    # ----- listing and stats ---------------------------------------------------------------------
    def list(self) -> list[dict]:
        return self._store.identity_summaries()

    def identity(self, name: str) -> dict:
        """One identity as `list()` gives it, with its templates oldest first under "samples" (template id, source,
        file hash, quality, created); raises `NotEnrolled` for an unknown name."""
        with self.reading() as store:
            return store.identity_record(self._require(name))

    def audit_log(self) -> list[dict]:
        return self._store.audit_entries()

    def stats(self) -> dict:
        """Counts, sizes, the index's state and the threshold in force, at the store's newest generation."""
        self._refresh()
        identities, templates = self._store.counts()
        size, wal = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file()), self.path / "gallery.db-wal"
        return {"identities": identities, "templates": templates, "indexed_vectors": len(self.index),
                "embedding_dim": self.dim, "template_policy": self.policy, "index_factory": self.index.factory,
                "backend": self.backend["name"],
                "embedder": self.fingerprint["fingerprint"], **threshold_in_force(self._store.get("threshold")),
                "generation": self._store.generation(), "bytes_on_disk": size,
                "bytes_per_identity": size / identities if identities else None,
                "bytes_per_template": size / templates if templates else None,
                "wal_bytes": wal.stat().st_size if wal.exists() else 0,
                "index": self._live.state()}
