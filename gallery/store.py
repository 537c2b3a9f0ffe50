"""The gallery's metadata store: one SQLite database, the source of truth.

Tables: `meta` (embedder fingerprint, index factory, template policy, threshold, generation),
`identities`, `templates` (one row per enrolled sample, with its embedding, source path, file hash
and quality; the row id is the vector id in the index), and the append-only `audit` log.
Every mutation runs in one transaction and bumps `generation`, which names the index file that
matches it (see `gallery.index`).
"""

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

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
    def __init__(self, path: Path):
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=FULL")
        self.connection.execute("PRAGMA foreign_keys=ON")
        self.connection.executescript(SCHEMA)

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
        connection.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           (key, json.dumps(value)))

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

    # identities and templates
    def identity_id(self, name: str, connection=None) -> int | None:
        row = (connection or self.connection).execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def identity_names(self) -> dict[int, str]:
        return dict(self.connection.execute("SELECT id, name FROM identities"))

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
