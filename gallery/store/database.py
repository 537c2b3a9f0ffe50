"""The gallery's metadata store: one SQLite database, the source of truth (its tables: `gallery.store.schema`).

`MetadataStore` owns the connection and every read; every mutation goes through the `StoreWrite` that
`transaction()` yields (`gallery.store.writes`). The write-ahead log is truncated after bulk writes.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from faceid.arrays import l2_normalize
from faceid.gallery.names import name_key
from faceid.gallery.records import GalleryError
from faceid.gallery.store.database_file import damage_reported, inspect_database_file
from faceid.gallery.store.schema import PAGE_SIZE, SCHEMA, add_name_keys
from faceid.gallery.store.writes import StoreWrite

WAL_LIMIT_BYTES = 64 * 1024 * 1024  # the write-ahead log is checkpointed and truncated beyond this


class MetadataStore:
    """The one owner of the gallery's SQL: the schema and every query, as named methods.

    Reads go through the store's connection; mutations through the `StoreWrite` yielded by `transaction()`
    (the same connection, inside BEGIN IMMEDIATE), so a caller cannot write outside a transaction by accident.
    """

    def __init__(self, path: Path, create: bool = False):
        self.path = Path(path)
        if not create:
            inspect_database_file(self.path)
        with self.damage_reported():
            self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            if create:
                self.connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
            elif not self.connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                tables = [r[0] for r in self.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
                self.connection.close()
                raise GalleryError(f"{self.path} is a SQLite database but not a faceid gallery (its tables: "
                                   f"{', '.join(tables) or 'none'}); open the gallery directory that holds yours")
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.execute("PRAGMA synchronous=FULL")
            self.connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self.connection.execute("PRAGMA foreign_keys=ON")
            self.connection.executescript(SCHEMA)
            add_name_keys(self.connection)

    def close(self) -> None:
        self.connection.close()

    def damage_reported(self):
        """`gallery.store.database_file.damage_reported` for this database."""
        return damage_reported(self.path)

    def checkpoint(self) -> None:
        """After a write: once the write-ahead log has grown beyond `WAL_LIMIT_BYTES` (a bulk enrolment), copy
        it into the database and truncate it."""
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size > WAL_LIMIT_BYTES:
            self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def reading(self):
        """One consistent view of the database across several reads (a deferred read transaction)."""
        if self.connection.in_transaction:
            yield
            return
        self.connection.execute("BEGIN")
        try:
            yield
        finally:
            self.connection.execute("COMMIT")

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: all or nothing. Yields the transaction's
        `StoreWrite`; one that changed what the index holds (or was bumped) commits the next generation."""
        self.connection.execute("BEGIN IMMEDIATE")
        write = StoreWrite(self, self.connection, self.generation() + 1)
        try:
            yield write
            if write.bumped:
                write.set("generation", write.generation)
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # meta
    def get(self, key: str, default=None):
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def generation(self) -> int:
        return int(self.get("generation", 0))

    # changes: what each generation touched, replayed onto snapshots and in-memory indexes
    def changes_since(self, generation: int) -> tuple[list[int], list[int]]:
        """(template ids, identity ids) touched after `generation`; the caller checks `history_start()`."""
        rows = self.connection.execute("SELECT identity_id, template_id FROM changes WHERE generation > ?",
                                       (generation,)).fetchall()
        return sorted({t for _, t in rows if t is not None}), sorted({i for i, _ in rows})

    def history_start(self) -> int:
        """`changes` is complete for every generation after this one."""
        return int(self.get("history_start", 0))

    def changes_count(self, generation: int) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM changes WHERE generation > ?", (generation,)).fetchone()[0]

    def tuning_probes(self) -> np.ndarray:
        """The stored tuning probes (n, d) float32, in the order given."""
        return _stacked([r[0] for r in self.connection.execute("SELECT embedding FROM tuning_probes ORDER BY id")])

    def audit_entries(self) -> list[dict]:
        rows = self.connection.execute("SELECT time, action, identity, detail FROM audit ORDER BY id").fetchall()
        return [{"time": t, "action": a, "identity": i, "detail": json.loads(d)} for t, a, i, d in rows]

    # identities
    def identity_id(self, name: str) -> int | None:
        row = self.connection.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def identity_names(self) -> dict[int, str]:
        return dict(self.connection.execute("SELECT id, name FROM identities"))

    def identity_names_of(self, identity_ids) -> dict[int, str]:
        return dict(self._rows_in("SELECT id, name FROM identities WHERE id IN ({})", identity_ids))

    def name_taken(self, name: str) -> str | None:
        """The enrolled name equal to `name` after case folding, if any."""
        row = self.connection.execute("SELECT name FROM identities WHERE name_key = ?", (name_key(name),)).fetchone()
        return row[0] if row else None

    def identity_summaries(self, identity_id: int | None = None) -> list[dict]:
        """Every identity (or the one of `identity_id`) by name: its template count, metadata and creation time."""
        where, parameters = ("WHERE i.id = ?", (identity_id,)) if identity_id is not None else ("", ())
        rows = self.connection.execute(
            "SELECT i.name, COUNT(t.id), i.metadata, i.created FROM identities i LEFT JOIN templates t "
            f"ON t.identity_id = i.id {where} GROUP BY i.id ORDER BY i.name", parameters).fetchall()
        return [{"identity": n, "templates": c, "metadata": json.loads(m), "created": t} for n, c, m, t in rows]

    def identity_record(self, identity_id: int) -> dict:
        """One identity's summary with its templates, oldest first ("samples": id, source, hash, quality, created)."""
        rows = self.connection.execute("SELECT id, source, file_hash, quality, created FROM templates "
                                       "WHERE identity_id = ? ORDER BY id", (identity_id,)).fetchall()
        samples = [{"template": i, "source": s, "file_hash": h, "quality": q, "created": c} for i, s, h, q, c in rows]
        return {**self.identity_summaries(identity_id)[0], "samples": samples}

    def counts(self) -> tuple[int, int]:
        """(identities, templates)."""
        identities = self.connection.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
        return identities, self.connection.execute("SELECT COUNT(*) FROM templates").fetchone()[0]

    # templates
    def file_hashes(self, identity_id: int) -> set[str]:
        return {row[0] for row in self.connection.execute("SELECT file_hash FROM templates WHERE identity_id = ?",
                                                          (identity_id,))}

    def template_sources(self) -> list[tuple[int, str | None]]:
        """(template id, source image path or None), ordered by template id."""
        return self.connection.execute("SELECT id, source FROM templates ORDER BY id").fetchall()

    def index_ids(self, per_identity: bool) -> np.ndarray:
        """The template ids, or (`per_identity`) the ids of identities that have templates, ascending."""
        query = ("SELECT DISTINCT identity_id FROM templates ORDER BY identity_id" if per_identity
                 else "SELECT id FROM templates ORDER BY id")
        return np.array([row[0] for row in self.connection.execute(query)], np.int64)

    def index_vectors(self, per_identity: bool) -> tuple[np.ndarray, np.ndarray]:
        """(ids, unit vectors) the index holds: every template, or (`per_identity`) each identity's mean template."""
        ids, owners, embeddings = self.all_templates()
        return _means(owners, embeddings) if per_identity else (ids, embeddings)

    def template_owners(self) -> dict[int, int]:
        """Template id -> identity id."""
        return dict(self.connection.execute("SELECT id, identity_id FROM templates"))

    def _rows_in(self, query: str, values) -> list[tuple]:
        """`query`'s rows for `WHERE ... IN (values)`, in chunks below SQLite's parameter limit."""
        values, rows = [int(v) for v in values], []
        for start in range(0, len(values), 10_000):
            chunk = values[start:start + 10_000]
            rows += self.connection.execute(query.format(",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def templates_by_id(self, template_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, identity ids, embeddings) of those of `template_ids` that exist, ordered by id."""
        return _template_arrays(sorted(self._rows_in(
            "SELECT id, identity_id, embedding FROM templates WHERE id IN ({})", template_ids)))

    def identity_means(self, identity_ids) -> tuple[np.ndarray, np.ndarray]:
        """(ids, unit mean templates) of those of `identity_ids` that have templates."""
        _, owners, embeddings = _template_arrays(self._rows_in(
            "SELECT id, identity_id, embedding FROM templates WHERE identity_id IN ({})", identity_ids))
        return _means(owners, embeddings)

    def export_rows(self) -> list[tuple]:
        """(identity name, identity metadata JSON, source, file hash, quality, embedding bytes) per template, by id."""
        return self.connection.execute(
            "SELECT i.name, i.metadata, t.source, t.file_hash, t.quality, t.embedding FROM templates t "
            "JOIN identities i ON i.id = t.identity_id ORDER BY t.id").fetchall()

    def all_templates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(template ids, identity ids, embeddings (N, d) float32), ordered by template id."""
        return _template_arrays(
            self.connection.execute("SELECT id, identity_id, embedding FROM templates ORDER BY id").fetchall())

    def templates_of(self, identity_id: int) -> np.ndarray:
        return _stacked([r[0] for r in self.connection.execute(
            "SELECT embedding FROM templates WHERE identity_id = ? ORDER BY id", (identity_id,))])


def _template_arrays(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(id, identity id, embedding bytes) rows -> (ids, identity ids, embeddings (N, d) float32)."""
    ids, owners, blobs = zip(*rows, strict=True) if rows else ((), (), ())
    return np.array(ids, np.int64), np.array(owners, np.int64), _stacked(list(blobs))


def _stacked(blobs: list[bytes]) -> np.ndarray:
    """float32 vector blobs -> (n, d); (0, 0) when none."""
    return np.stack([np.frombuffer(b, np.float32) for b in blobs]) if blobs else np.zeros((0, 0), np.float32)


def _means(owners: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(identity ids, each identity's unit mean template)."""
    if not len(owners):
        return owners, np.zeros((0, 0), np.float32)
    order = np.argsort(owners, kind="stable")
    identity_ids, starts = np.unique(owners[order], return_index=True)
    return identity_ids, l2_normalize(np.add.reduceat(embeddings[order], starts, axis=0), axis=1)

