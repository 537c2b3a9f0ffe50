"""The gallery's metadata store: one SQLite database, the source of truth.

Tables: `meta` (embedder fingerprint, index factory, template policy, threshold, generation),
`identities`, `templates` (one row per enrolled sample, with its embedding, source path, file hash
and quality; the row id is the vector id in the index), and the append-only `audit` log.
Every mutation runs in one transaction and bumps `generation`, which names the index file that
matches it (see `gallery.index`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from faceid.arrays import l2_normalize
from gallery.names import name_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL DEFAULT '{}', created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS templates (
    id INTEGER PRIMARY KEY, identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    source TEXT, file_hash TEXT, quality REAL, embedding BLOB NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS templates_identity ON templates(identity_id);
CREATE INDEX IF NOT EXISTS templates_hash ON templates(identity_id, file_hash);
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

    def __init__(self, path: Path):
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.executescript(SCHEMA)
        add_name_keys(self.connection)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: all or nothing."""
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
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
        generation = int(json.loads((connection.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
                                     or ["0"])[0])) + 1
        self.set(connection, "generation", generation)
        return generation

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

    def add_identity(self, connection, name: str, metadata: dict, created: float) -> int:
        return connection.execute("INSERT INTO identities(name, metadata, created, name_key) VALUES(?, ?, ?, ?)",
                                  (name, json.dumps(metadata), created, name_key(name))).lastrowid

    def rename_identity(self, connection, identity_id: int, name: str) -> None:
        connection.execute("UPDATE identities SET name = ?, name_key = ? WHERE id = ?",
                           (name, name_key(name), identity_id))

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
        return connection.execute(
            "INSERT INTO templates(identity_id, source, file_hash, quality, embedding, created) "
            "VALUES(?, ?, ?, ?, ?, ?)",
            (identity_id, sample.source, sample.file_hash, sample.quality, sample.embedding.tobytes(), created),
        ).lastrowid

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

    def index_ids(self, per_identity: bool) -> np.ndarray:
        """The template ids, or (`per_identity`) the ids of identities that have templates, ascending."""
        query = ("SELECT DISTINCT identity_id FROM templates ORDER BY identity_id" if per_identity
                 else "SELECT id FROM templates ORDER BY id")
        return np.array([row[0] for row in self.connection.execute(query)], np.int64)

    def index_vectors(self, per_identity: bool) -> tuple[np.ndarray, np.ndarray]:
        """(ids, unit vectors) the index holds: every template, or (`per_identity`) each identity's mean template."""
        ids, owners, embeddings = self.all_templates()
        if not per_identity:
            return ids, embeddings
        identity_ids = np.unique(owners)
        if not len(identity_ids):
            return identity_ids, np.zeros((0, 0), np.float32)
        return identity_ids, l2_normalize(np.stack([embeddings[owners == i].mean(0) for i in identity_ids]))

    def template_owners(self) -> dict[int, int]:
        """Template id -> identity id."""
        return dict(self.connection.execute("SELECT id, identity_id FROM templates"))

    def export_rows(self) -> list[tuple]:
        """(identity name, identity metadata JSON, source, file hash, quality, embedding bytes) per template, by id."""
        return self.connection.execute(
            "SELECT i.name, i.metadata, t.source, t.file_hash, t.quality, t.embedding FROM templates t "
            "JOIN identities i ON i.id = t.identity_id ORDER BY t.id").fetchall()

    def all_templates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(template ids, identity ids, embeddings (N, d) float32), ordered by template id."""
        rows = self.connection.execute("SELECT id, identity_id, embedding FROM templates ORDER BY id").fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        ids = np.array([r[0] for r in rows], np.int64)
        owners = np.array([r[1] for r in rows], np.int64)
        return ids, owners, np.stack([np.frombuffer(r[2], np.float32) for r in rows])

    def templates_of(self, identity_id: int) -> np.ndarray:
        rows = self.connection.execute("SELECT embedding FROM templates WHERE identity_id = ? ORDER BY id",
                                       (identity_id,)).fetchall()
        return np.stack([np.frombuffer(r[0], np.float32) for r in rows]) if rows else np.zeros((0, 0), np.float32)


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
