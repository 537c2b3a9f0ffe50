"""The gallery's in-memory index, kept at the store's generation by replay, and its snapshots on disk.

SQLite is the source of truth; every mutation also records, in its transaction, which templates and
identities it touched (`changes`, under the new generation). A process brings its index from the
generation it holds to the store's by replaying those changes: touched ids are removed from the index
where present and the touched rows that still exist are added again (their mean, for the `mean`
template policy). Replay is idempotent and costs what the changes cost, so a write in one process
costs O(1) and other processes see it on their next query.

The FAISS index file is a snapshot: `index.<generation>.faiss`, written (under the writer lock) when the
changes since the last snapshot pass `SNAPSHOT_CHANGES` and a quarter of the index, or are older than
`SNAPSHOT_SECONDS` — in a background thread after a write, or on close — and after a rebuild. Only once
the file is durable is it recorded in SQLite with its generation and CRC-32; then older snapshots are
deleted. Opening loads the recorded snapshot, verifies its checksum and replays the changes after it;
a missing, damaged or unrecorded snapshot is rebuilt from SQLite, logged and reported in
`Gallery.stats()["index"]`. A crash at any step leaves the last recorded snapshot and the changes after
it, which is all an open needs.

A tuning record saved by another process (`gallery tune`, which bumps the generation) is taken on the replay that
follows (`VectorIndex.follow_tuning`); a snapshot never writes an older record over it (`gallery.index.tuning`).

Milvus keeps its own index: no snapshot file; the writer applies its changes to the shared collection,
then records in it the generation it now holds (`MilvusIndex.mark`); other processes only follow the names.
Opening, and each write, first check that the collection holds the store's generation and its ids; if
not (a writer died after its commit), the changes it lacks are applied under the writer lock, or the
collection is rebuilt from SQLite when they are not all known. A reader that finds the collection's mark
behind the store (one read per store generation) repairs it too, but only if the writer lock is free: a
live writer holds it until its update is done, and readers never wait for it (`follow_shared`). The
marked collection is recorded like a snapshot once `SNAPSHOT_CHANGES` changes follow the last record, so
the changes history stays bounded (`trim_history`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from faceid.files import file_checksum
from faceid.gallery.index import tuning
from faceid.gallery.store.database import MetadataStore
from faceid.gallery.store.writer_lock import writer_lock

SNAPSHOT_CHANGES = 64  # changed templates/identities since the snapshot that make a new one due,
SNAPSHOT_FRACTION = 0.25  # or this share of the index, if more: rewriting stays O(1) per change, amortised
SNAPSHOT_SECONDS = 600  # age at which any change since the snapshot makes a new one due
STALE_FILES = (".index.*.tmp.faiss", "index.*.*.tmp")  # temporaries of dead writers (current and old names)
log = logging.getLogger("faceid.gallery")


class LiveIndex:
    """`index` (a `VectorIndex` or `MilvusIndex`) with the maps a search needs — `names` (identity id ->
    name) and `owner` (index id -> identity id) — kept at the store's generation (see the module doc)."""

    def __init__(self, folder: Path, store: MetadataStore, index, per_identity: bool):
        self.folder, self.store, self.index, self.per_identity = Path(folder), store, index, per_identity
        self.names: dict[int, str] = {}
        self.owner: dict[int, int] = {}
        self.generation: int | None = None
        self.confirmed: int | None = None  # Milvus: the last store generation the collection was seen to hold
        self.needs_snapshot = False  # the index was rebuilt: the recorded snapshot (if any) is no use
        self.report = {"snapshot_generation": None, "rebuilt_reason": None, "replayed_changes": 0}
        self._background: threading.Thread | None = None
        self._cleaned = False

    @property
    def snapshots(self) -> bool:
        """Whether the vectors live in this process's memory and are snapshotted (`BackendCapabilities`); else
        the backend shares and persists them itself."""
        return self.index.capabilities.snapshots

    # ----- catching up -----------------------------------------------------------------------------
    def refresh(self, own_write: bool = False) -> None:
        """Bring the index to the store's generation. `own_write`: this process just committed, so it also
        applies the changes to a shared (Milvus) index; otherwise the writing process did that."""
        if self.generation is None and not self.snapshots:
            self.repair_shared()
        elif not own_write and not self.snapshots:
            self.follow_shared()
        for attempt in range(3):  # a snapshot deleted by a newer one while we read it: look again
            with self.store.reading():
                generation, held = self.store.generation(), self.generation
                if generation == held:
                    return
                self.generation = None  # until the catch-up completes: after an error, a full reload is due
                if held is not None and held >= self.store.history_start():
                    self._replay(held, own_write or self.snapshots)
                    if own_write and not self.snapshots:
                        self.index.mark(generation)
                    if self.snapshots:  # a newer tuning record (another process's `gallery tune`) is applied
                        self.index.follow_tuning()
                elif not self._open(last_try=attempt == 2):
                    continue
                self.generation = generation
                return

    def repair_shared(self) -> None:
        """Milvus: bring the collection to the store's generation if it is behind or holds other ids, under the
        writer lock (no writer is half-way then): the changes since the generation it holds, else a rebuild."""
        def current() -> bool:
            return (self.index.synced() == self.store.generation()
                    and self.index.matches(self.store.index_ids(self.per_identity)))

        if current():
            return
        with writer_lock(self.folder), self.store.reading():
            synced, generation = self.index.synced(), self.store.generation()
            if synced is not None and self.store.history_start() <= synced < generation:
                self._replay(synced, True, from_snapshot=True)
                self.index.mark(generation)
                log.warning("%s: the Milvus collection was at generation %d: replayed to %d", self.folder, synced,
                            generation)
            if not current():
                self.rebuild(self.index.rebuild_reason)

    def follow_shared(self) -> None:
        """Milvus, before a read: a collection whose mark is behind the store has a writer between its commit and
        its update of the collection (it holds the writer lock: go on, skipping the ids the collection lacks), or
        had one that died there (the lock is free): then repair it now, or what that writer added would stay
        unfindable until the next open or write. The mark is read once per store generation it is found at."""
        generation = self.store.generation()
        if generation == self.confirmed:
            return
        if self.index.synced() == generation:
            self.confirmed = generation
            return
        with writer_lock(self.folder, wait=False) as free:
            if free and self.index.synced() != self.store.generation():  # still behind, and no writer is half-way
                log.warning("%s: the Milvus collection is behind gallery.db (a writer died after its commit): "
                            "repairing it", self.folder)
                self.repair_shared()

    def _open(self, last_try: bool) -> bool:
        """Load the recorded snapshot and replay the changes after it, or rebuild; False to look again."""
        if not self.snapshots:  # `repair_shared` has brought the collection to the store
            self._load_names()
            return True
        record = self.store.get("snapshot")
        if record is None:
            self.rebuild("no snapshot is recorded (a gallery made before snapshots)")
            return True
        problem = self.index.load(self.folder / record["file"], record["checksum"])
        if problem and problem.endswith("is missing") and not last_try:
            return False
        if problem:
            self.rebuild(problem)
            return True
        self.report.update(snapshot_generation=record["generation"], rebuilt_reason=None)
        self._load_names()
        self._replay(record["generation"], True, from_snapshot=True)
        return True

    def _replay(self, since: int, apply_vectors: bool, from_snapshot: bool = False) -> None:
        """Apply the changes after `since`. The maps mirror the index's content, except right after a snapshot
        is loaded (they are read from the store): then the snapshot's own ids say what is present."""
        templates, identities = self.store.changes_since(since)
        touched = identities if self.per_identity else templates
        self.report["replayed_changes"] += len(touched)
        if self.per_identity:
            ids, vectors = self.store.identity_means(identities)
            owners = ids
        else:
            ids, owners, vectors = self.store.templates_by_id(templates)
        if apply_vectors:
            present = (np.intersect1d(touched, self.index.ids) if from_snapshot
                       else np.array([i for i in touched if i in self.owner], np.int64))
            if (len(present) and not self.index.remove(present)) or (len(ids) and not self.index.add(ids, vectors)):
                self.rebuild(f"the {self.index.factory} index cannot change in place")
                return
        for i in touched:
            self.owner.pop(i, None)
        self.owner.update(zip(ids.tolist(), owners.tolist(), strict=True))
        for i in identities:
            self.names.pop(i, None)
        self.names.update(self.store.identity_names_of(identities))

    def rebuild(self, reason: str) -> None:
        """Rebuild the index and maps from SQLite, saying why; a snapshot is due at the next write."""
        if self.store.counts()[1]:
            log.warning("%s: rebuilding the index from gallery.db: %s", self.folder, reason)
        self.index.build(*self.store.index_vectors(self.per_identity))
        if not self.snapshots:
            self.index.mark(self.store.generation())
        self._load_names()
        self.needs_snapshot = True
        self.report.update(snapshot_generation=None, rebuilt_reason=reason)

    def state(self) -> dict:
        """What `Gallery.stats()["index"]` shows: the snapshot/replay report, the tuning record (its `real_queries`:
        the stored real probes it used) and how many real probes gallery.db holds for the tuner."""
        return {**self.report, "tuning": getattr(self.index, "tuning", None),
                "stored_probes": len(self.store.tuning_probes()) if self.snapshots else 0}

    def _load_names(self) -> None:
        self.names = self.store.identity_names()
        self.owner = (self.store.template_owners() if not self.per_identity
                      else {int(i): int(i) for i in self.store.index_ids(per_identity=True)})

    # ----- snapshots (the caller holds the writer lock) --------------------------------------------
    def before_write(self) -> None:
        """The first write of this process removes temporaries left by dead writers; a Milvus collection left
        behind by a dead writer is repaired before this write adds to it."""
        if not self.snapshots and self.index.synced() != self.generation:
            self.generation = None
            self.refresh()  # `repair_shared`, then the maps reloaded
        if not self._cleaned:
            self.remove_stale_files()
            self._cleaned = True

    def after_write(self, make_index) -> None:
        """After a committed write: truncate the WAL if a bulk write grew it; write the snapshot now if the
        index had to be rebuilt, or in the background if one is due (Milvus: `trim_history`)."""
        if not self.snapshots:
            self.trim_history()  # first: the checkpoint then truncates the WAL its transaction wrote to
        self.store.checkpoint()
        if self.needs_snapshot:
            self.write_snapshot()
        elif self.snapshot_due():
            self.snapshot_in_background(make_index)

    def snapshot_due(self) -> bool:
        if not self.snapshots:
            return False
        record = self.store.get("snapshot")
        return self.needs_snapshot or record is None or self._enough_changes(record)

    def _enough_changes(self, record: dict) -> bool:
        """Whether enough changed since the snapshot `record` for a new one: `SNAPSHOT_CHANGES` changes or
        `SNAPSHOT_FRACTION` of the index, whichever is more, or any change once it is `SNAPSHOT_SECONDS` old."""
        changes = self.store.changes_count(record["generation"])
        return (changes >= max(SNAPSHOT_CHANGES, SNAPSHOT_FRACTION * len(self.index))
                or bool(changes and time.time() - record["time"] > SNAPSHOT_SECONDS))

    def trim_history(self) -> None:
        """Shared backend, after a write: the collection, marked with the generation G it holds, is this backend's
        snapshot (no file). Once enough changes follow the last one recorded (`_enough_changes`), record G as one:
        as for snapshots, the changes up to the previous record are forgotten (`StoreWrite.record_snapshot`).
        Repair needs only those after G; those between the two records let other processes catch up by replay."""
        synced, record = self.index.synced(), self.store.get("snapshot")
        if synced is None or (record is not None and not self._enough_changes(record)):
            return
        with self.store.transaction() as write:
            write.record_snapshot({"generation": synced, "file": None, "checksum": None, "time": time.time()})

    def write_snapshot(self, only_if_stale: bool = False) -> None:
        """Write the index of the held generation, then record it (generation, CRC-32) and delete the others;
        `only_if_stale`: unless the recorded snapshot already is of this generation."""
        record = self.store.get("snapshot")
        if not self.snapshots or (only_if_stale and not self.needs_snapshot and record is not None
                                  and record["generation"] == self.generation):
            return
        path = self.folder / f"index.{self.generation}.faiss"
        checksum = self.index.save(path)
        record = {"generation": self.generation, "file": path.name, "checksum": checksum, "time": time.time()}
        with self.store.transaction() as write:
            write.record_snapshot(record)
            tuning.save_record(write, self.index.tuning)  # stored with the index it was made for
        self.needs_snapshot = False
        self.report["snapshot_generation"] = self.generation
        self.remove_stale_files()

    def remove_stale_files(self) -> None:
        """Delete temporaries of dead writers and unrecorded snapshots (we hold the writer lock: no live writer
        is writing one)."""
        if not self.snapshots:
            return
        keep = (self.store.get("snapshot") or {}).get("file")
        stale = [f for pattern in STALE_FILES for f in self.folder.glob(pattern)]
        for file in stale + [f for f in self.folder.glob("index.*.faiss") if f.name != keep]:
            file.unlink(missing_ok=True)

    def snapshot_in_background(self, make_index) -> None:
        """Start writing a snapshot in a thread of its own (its own connection and index: this one is not
        touched), unless one is running."""
        if self._background is None or not self._background.is_alive():
            self._background = threading.Thread(target=_snapshot_job, daemon=True, name="gallery-snapshot",
                                                args=(self.folder, self.store.path, make_index, self.per_identity))
            self._background.start()

    def replace_index(self, index, reason: str) -> None:
        """Swap in a new backend (the gallery was re-embedded: under the writer lock, after the commit), closing the
        old one (a Milvus connection, its share of a Milvus Lite server), and build it from the store."""
        old, self.index = self.index, index
        old.close()
        self.rebuild(reason)
        self.generation = self.store.generation()

    def wait(self) -> None:
        """Wait for the background snapshot, if one is being written."""
        if self._background is not None:
            self._background.join()

    # ----- checking --------------------------------------------------------------------------------
    def check(self) -> dict:
        """Compare the index, id by id and vector by vector, with SQLite, and the snapshot with its checksum."""
        self.refresh()
        expected_ids, expected = self.store.index_vectors(self.per_identity)
        ids, vectors = self.index.content()
        position = {int(i): row for row, i in enumerate(ids)}
        missing = [int(i) for i in expected_ids if int(i) not in position]
        unexpected = sorted(set(position) - set(expected_ids.tolist()))
        mismatched = [] if vectors is None else [
            int(i) for i, vector in zip(expected_ids, expected, strict=True)
            if int(i) in position and not np.allclose(vectors[position[int(i)]], vector, atol=1e-5)]
        report = {"indexed": len(ids), "expected": len(expected_ids), "duplicated": len(ids) - len(position),
                  "missing": missing[:10], "unexpected": unexpected[:10], "vectors_compared": vectors is not None,
                  "mismatched": mismatched[:10], "index": dict(self.report), "snapshot": self._snapshot_state()}
        report["consistent"] = not (missing or unexpected or mismatched or report["duplicated"]) and (
            report["snapshot"] in ("verified", "not used"))
        return report

    def _snapshot_state(self) -> str:
        record = self.store.get("snapshot")
        if not self.snapshots:
            return "not used"
        if record is None:
            return "none recorded"
        try:
            found = file_checksum(self.folder / record["file"])
        except FileNotFoundError:
            return f"{record['file']} is missing"
        return "verified" if found == record["checksum"] else f"{record['file']} is damaged (CRC-32 mismatch)"


def _snapshot_job(folder: Path, database: Path, make_index, per_identity: bool) -> None:
    """Write a snapshot from the recorded one plus the changes after it: load outside the writer lock, then,
    if one is still due once the lock is held (a writer may have written one meanwhile, e.g. after a rebuild),
    catch up and write it."""
    store = MetadataStore(database)
    try:
        live = LiveIndex(folder, store, make_index(), per_identity)
        live.refresh()
        with writer_lock(folder):
            if live.snapshot_due():
                live.refresh()
                live.write_snapshot()
    except Exception:  # a failed snapshot costs only a longer replay at the next open
        log.exception("%s: writing the index snapshot failed", folder)
    finally:
        store.close()
