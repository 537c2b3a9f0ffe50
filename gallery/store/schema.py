"""The gallery database's schema: its tables, and the one migration galleries with an older schema get.

Tables: `meta` (settings: embedder fingerprint, index factory, template policy, threshold, generation, the
index snapshot's record), `identities`, `templates` (one row per enrolled sample, with its float32 embedding,
source path, file hash and quality; the row id is the vector id in the index), `changes` (which templates and
identities each generation touched, kept since the snapshot before last: what a process replays onto a snapshot
or onto its in-memory index, see `gallery.index.live_index`), `tuning_probes` (the real probes of `gallery tune`,
see `gallery.index.tuning`) and the append-only `audit` log.
"""

from faceid.gallery.names import name_key

PAGE_SIZE = 32768  # a 2 KB embedding row shares a page with fourteen others instead of taking a 4 KiB page alone
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


def add_name_keys(connection) -> None:
    """`identities.name_key`: the case-folded name under a UNIQUE index, so that "Alice" and "alice" cannot both
    be enrolled. A gallery without the column gets it filled once; names that already collide keep a key no
    validated name can have (the name, NUL, the row id)."""
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
