"""`StoreWrite`: every mutation of the gallery database, inside the one transaction that yields it.

`MetadataStore.transaction()` opens BEGIN IMMEDIATE and hands out a `StoreWrite` bound to it, so nothing can be
written outside a transaction. A write that adds, removes, renames or re-embeds something records what it touched
in `changes` under the transaction's generation (what other processes replay) and commits that new generation;
`bump()` asks for a new generation without such a change (a new tuning record that other processes must follow).
"""

from __future__ import annotations

import json
import time

import numpy as np

from faceid.gallery.names import name_key


class StoreWrite:
    def __init__(self, store, connection, generation: int):
        self.store, self.connection, self.generation = store, connection, generation
        self.bumped = False  # whether this transaction commits `generation`

    def bump(self) -> int:
        """Commit a new generation: other processes replay (and follow the settings of) this write."""
        self.bumped = True
        return self.generation

    def set(self, key: str, value) -> None:
        self.connection.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, json.dumps(value)))

    def audit(self, action: str, identity: str | None, detail: dict) -> None:
        self.connection.execute("INSERT INTO audit(time, action, identity, detail) VALUES(?, ?, ?, ?)",
                                (time.time(), action, identity, json.dumps(detail)))

    def _changed(self, identity_id: int, template_ids=(None,)) -> None:
        self.connection.executemany("INSERT INTO changes(generation, identity_id, template_id) VALUES(?, ?, ?)",
                                    [(self.generation, identity_id, None if t is None else int(t))
                                     for t in template_ids])
        self.bump()

    def add_identity(self, name: str, metadata: dict, created: float) -> int:
        identity_id = self.connection.execute(
            "INSERT INTO identities(name, metadata, created, name_key) VALUES(?, ?, ?, ?)",
            (name, json.dumps(metadata), created, name_key(name))).lastrowid
        self._changed(identity_id)
        return identity_id

    def rename_identity(self, identity_id: int, name: str) -> None:
        self.connection.execute("UPDATE identities SET name = ?, name_key = ? WHERE id = ?",
                                (name, name_key(name), identity_id))
        self._changed(identity_id)

    def remove_identity(self, identity_id: int) -> np.ndarray:
        """Delete the identity and its templates; returns the deleted template ids."""
        removed = np.array([r[0] for r in self.connection.execute(
            "SELECT id FROM templates WHERE identity_id = ? ORDER BY id", (identity_id,))], np.int64)
        self.connection.execute("DELETE FROM templates WHERE identity_id = ?", (identity_id,))
        self.connection.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        self._changed(identity_id, [None, *removed])
        return removed

    def add_template(self, identity_id: int, sample, created: float) -> int:
        """Insert one `Sample` (embedding, source, file hash, quality) for `identity_id`; returns its row id."""
        template_id = self.connection.execute(
            "INSERT INTO templates(identity_id, source, file_hash, quality, embedding, created) "
            "VALUES(?, ?, ?, ?, ?, ?)", (identity_id, sample.source, sample.file_hash, sample.quality,
                                         np.asarray(sample.embedding, np.float32).tobytes(), created),
        ).lastrowid
        self._changed(identity_id, [template_id])
        return template_id

    def replace_embeddings(self, embeddings: list[tuple[int, np.ndarray]]) -> None:
        """Overwrite the embedding of each (template id, vector)."""
        self.connection.executemany("UPDATE templates SET embedding = ? WHERE id = ?",
                                    [(np.asarray(vector, np.float32).tobytes(), i) for i, vector in embeddings])
        owners = self.store.template_owners()
        for i, _ in embeddings:
            self._changed(owners[i], [i])

    def set_tuning_probes(self, vectors: np.ndarray) -> None:
        """Replace the stored tuning probes with `vectors` (n, d) (n = 0: none)."""
        self.connection.execute("DELETE FROM tuning_probes")
        self.connection.executemany("INSERT INTO tuning_probes(embedding) VALUES(?)",
                                    [(row.tobytes(),) for row in np.asarray(vectors, np.float32)])

    def record_snapshot(self, record: dict) -> None:
        """Name the index snapshot of `record['generation']`; forget changes older than the previous one, whose
        readers can still catch up from it."""
        previous = (self.store.get("snapshot") or {}).get("generation", 0)
        self.connection.execute("DELETE FROM changes WHERE generation <= ?", (previous,))
        self.set("history_start", previous)
        self.set("snapshot", record)
