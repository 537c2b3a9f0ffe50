"""The gallery's metadata store: one SQLite database, the source of truth.

Tables: `meta` (embedder fingerprint, index factory, template policy, threshold, generation, the
index snapshot's record), `identities`, `templates` (one row per enrolled sample, with its float32
embedding, source path, file hash and quality; the row id is the vector id in the index), `changes`
(which templates and identities each generation touched, kept since the snapshot before last: what a
process replays onto a snapshot or onto its in-memory index, see `gallery.index.live_index`), `tuning_probes` (the
real probes of `gallery tune`, see `gallery.index.tuning`) and the append-only `audit` log. Every mutation runs in one
transaction and bumps `generation`.

A new database uses 32 KiB pages: a 2 KB embedding row then shares a page with fourteen others
instead of taking a 4 KiB page to itself. The write-ahead log is truncated after bulk writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from faceid.gallery.names import name_key
from faceid.gallery.records import GalleryError
from faceid.gallery.store.database_file import damage_reported, inspect_database_file

from faceid.arrays import l2_normalize

PAGE_SIZE = 32768
WAL_LIMIT_BYTES = 64 * 1024 * 1024  # the write-ahead log is checkpointed and truncated beyond this
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT, file_hash TEXT, quality REAL, embedding BLOB NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS templates_identity ON templates(identity_id);
DROP INDEX IF EXISTS templates_hash;
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, identity_id INTEGER NOT NULL, template_id INTEGER);
CREATE INDEX IF NOT EXISTS changes_generation ON changes(generation);
CREATE TABLE IF NOT EXISTS tuning_probes (id INTEGER PRIMARY KEY, embedding BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY, time REAL NOT NULL, action TEXT NOT NULL, identity TEXT, detail TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class MetadataStore:
    """The one owner of the gallery's SQL: the schema and every query, as named methods.

    Reads go through the store's connection; mutations take the connection yielded by `transaction()`
    (the same one, inside BEGIN IMMEDIATE), so a caller cannot write outside a transaction by accident.
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
        self._pending = None

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
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: all or nothing."""
        self.connection.execute("BEGIN IMMEDIATE")
        self._pending = self.generation() + 1  # the generation this transaction's changes are recorded under
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        finally:
            self._pending = None
        self.connection.execute("COMMIT")

    # meta
    def get(self, key: str, default=None):
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, connection, key: str, value) -> None:
        connection.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def generation(self) -> int:
        return int(self.get("generation", 0))

    def bump(self, connection) -> int:
        self.set(connection, "generation", self._pending)
        return self._pending

    # changes: what each generation touched, replayed onto snapshots and in-memory indexes
    def _changed(self, connection, identity_id: int, template_ids=(None,)) -> None:
        connection.executemany("INSERT INTO changes(generation, identity_id, template_id) VALUES(?, ?, ?)",
                               [(self._pending, identity_id, None if t is None else int(t)) for t in template_ids])

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

    def record_snapshot(self, connection, record: dict) -> None:
        """Name the index snapshot of `record['generation']`; forget changes older than the previous one, whose
        readers can still catch up from it."""
        previous = (self.get("snapshot") or {}).get("generation", 0)
        connection.execute("DELETE FROM changes WHERE generation <= ?", (previous,))
        self.set(connection, "history_start", previous)
        self.set(connection, "snapshot", record)

    def set_tuning_probes(self, connection, vectors: np.ndarray) -> None:
        """Replace the stored tuning probes with `vectors` (n, d) (n = 0: none)."""
        connection.execute("DELETE FROM tuning_probes")
        connection.executemany("INSERT INTO tuning_probes(embedding) VALUES(?)",
                               [(row.tobytes(),) for row in np.asarray(vectors, np.float32)])

    def tuning_probes(self) -> np.ndarray:
        """The stored tuning probes (n, d) float32, in the order given."""
        return _stacked([r[0] for r in self.connection.execute("SELECT embedding FROM tuning_probes ORDER BY id")])

    def audit(self, connection, action: str, identity: str | None, detail: dict) -> None:
        connection.execute("INSERT INTO audit(time, action, identity, detail) VALUES(?, ?, ?, ?)",
                           (time.time(), action, identity, json.dumps(detail)))

    def audit_entries(self) -> list[dict]:
        rows = self.connection.execute("SELECT time, action, identity, detail FROM audit ORDER BY id").fetchall()
        return [{"time": t, "action": a, "identity": i, "detail": json.loads(d)} for t, a, i, d in rows]

    # identities
    def identity_id(self, name: str, connection=None) -> int | None:
        row = (connection or self.connection).execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def identity_names(self) -> dict[int, str]:
        return dict(self.connection.execute("SELECT id, name FROM identities"))

    def identity_names_of(self, identity_ids) -> dict[int, str]:
        return dict(self._rows_in("SELECT id, name FROM identities WHERE id IN ({})", identity_ids))

    def add_identity(self, connection, name: str, metadata: dict, created: float) -> int:
        identity_id = connection.execute(
            "INSERT INTO identities(name, metadata, created, name_key) VALUES(?, ?, ?, ?)",
            (name, json.dumps(metadata), created, name_key(name))).lastrowid
        self._changed(connection, identity_id)
        return identity_id

    def rename_identity(self, connection, identity_id: int, name: str) -> None:
        connection.execute("UPDATE identities SET name = ?, name_key = ? WHERE id = ?",
                           (name, name_key(name), identity_id))
        self._changed(connection, identity_id)

    def name_taken(self, name: str, connection=None) -> str | None:
        """The enrolled name equal to `name` after case folding, if any."""
        row = (connection or self.connection).execute("SELECT name FROM identities WHERE name_key = ?",
                                                      (name_key(name),)).fetchone()
        return row[0] if row else None

    def remove_identity(self, connection, identity_id: int) -> np.ndarray:
        """Delete the identity and its templates; returns the deleted template ids."""
        removed = np.array([r[0] for r in connection.execute(
            "SELECT id FROM templates WHERE identity_id = ? ORDER BY id", (identity_id,))], np.int64)
        connection.execute("DELETE FROM templates WHERE identity_id = ?", (identity_id,))
        connection.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        self._changed(connection, identity_id, [None, *removed])
        return removed

    def identity_summaries(self) -> list[dict]:
        """Every identity by name: its template count, metadata and creation time."""
        rows = self.connection.execute(
            "SELECT i.name, COUNT(t.id), i.metadata, i.created FROM identities i LEFT JOIN templates t "
            "ON t.identity_id = i.id GROUP BY i.id ORDER BY i.name").fetchall()
        return [{"identity": n, "templates": c, "metadata": json.loads(m), "created": t} for n, c, m, t in rows]

    def counts(self) -> tuple[int, int]:
        """(identities, templates)."""
        identities = self.connection.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
        return identities, self.connection.execute("SELECT COUNT(*) FROM templates").fetchone()[0]

    # templates
    def add_template(self, connection, identity_id: int, sample, created: float) -> int:
        """Insert one `Sample` (embedding, source, file hash, quality) for `identity_id`; returns its row id."""
        template_id = connection.execute(
            "INSERT INTO templates(identity_id, source, file_hash, quality, embedding, created) "
            "VALUES(?, ?, ?, ?, ?, ?)", (identity_id, sample.source, sample.file_hash, sample.quality,
                                         np.asarray(sample.embedding, np.float32).tobytes(), created),
        ).lastrowid
        self._changed(connection, identity_id, [template_id])
        return template_id

    def file_hashes(self, connection, identity_id: int) -> set[str]:
        return {row[0] for row in connection.execute("SELECT file_hash FROM templates WHERE identity_id = ?",
                                                     (identity_id,))}

    def template_sources(self) -> list[tuple[int, str | None]]:
        """(template id, source image path or None), ordered by template id."""
        return self.connection.execute("SELECT id, source FROM templates ORDER BY id").fetchall()

    def replace_embeddings(self, connection, embeddings: list[tuple[int, np.ndarray]]) -> None:
        """Overwrite the embedding of each (template id, vector)."""
        connection.executemany("UPDATE templates SET embedding = ? WHERE id = ?",
                               [(np.asarray(vector, np.float32).tobytes(), i) for i, vector in embeddings])
        owners = self.template_owners()
        for i, _ in embeddings:
            self._changed(connection, owners[i], [i])

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


def add_name_keys(connection) -> None:
    """Schema addition (issue 12): `identities.name_key`, the case-folded name under a UNIQUE index, so that
    "Alice" and "alice" cannot both be enrolled. Galleries made before it get the column filled once; names
    that already collide keep a key no validated name can have (the name, NUL, the row id)."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(identities)")}
    if "name_key" in columns:
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(identities)")}
        if "name_key" not in columns:  # another process may have migrated it meanwhile
            connection.execute("ALTER TABLE identities ADD COLUMN name_key TEXT")
            seen = set()
            for identity_id, name in connection.execute("SELECT id, name FROM identities ORDER BY id").fetchall():
                key = name_key(name)
                key = key if key not in seen else f"{key}\x00{identity_id}"
                seen.add(key)
                connection.execute("UPDATE identities SET name_key = ? WHERE id = ?", (key, identity_id))
            connection.execute("CREATE UNIQUE INDEX identities_name_key ON identities(name_key)")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
