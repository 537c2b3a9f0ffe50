"""Where each template id sits in an index's id map, kept in step with in-place adds and removals.

Template ids are SQLite rowids, dense and growing, so the map is a flat array indexed by id (4 bytes per id ever
issued): finding, adding and moving cost O(changed ids), not a pass over every stored id. Ids too
sparse for an array (the largest above `SPARSE_FACTOR` x their count + `SPARSE_SLACK`, e.g. an import of
foreign ids) are found by a scan instead.
"""

import numpy as np

SPARSE_FACTOR = 8
SPARSE_SLACK = 1 << 20


class IdRows:
    """id -> row of an id map (`ids`, the index's no-copy view), built on first use and then updated by the
    index at each change; `reset()` after a rebuild or load."""

    def __init__(self):
        self._rows: np.ndarray | None = None
        self._sparse = False

    def reset(self) -> None:
        self._rows, self._sparse = None, False

    def find(self, ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        """The sorted rows of `ids` that hold any of `wanted` (absent ids are skipped)."""
        wanted = np.asarray(wanted, np.int64)
        if self._rows is None and not self._sparse:
            self._build(ids)
        if self._sparse:
            return np.flatnonzero(np.isin(ids, wanted))
        wanted = wanted[(wanted >= 0) & (wanted < len(self._rows))]
        rows = self._rows[wanted]
        return np.unique(rows[rows >= 0])

    def added(self, ids: np.ndarray, first_row: int) -> None:
        """`ids` now sit at rows `first_row`, `first_row + 1`, ..."""
        self.moved(np.asarray(ids, np.int64), np.arange(first_row, first_row + len(ids)))

    def moved(self, ids: np.ndarray, rows: np.ndarray) -> None:
        if self._rows is None:
            return
        if len(ids) and (ids.min() < 0 or ids.max() > self._limit(len(self._rows))):
            self.reset()  # rebuilt (or found sparse) on the next find
            return
        if len(ids) and ids.max() >= len(self._rows):
            grown = np.full(max(2 * len(self._rows), int(ids.max()) + 1), -1, np.int32)
            grown[:len(self._rows)] = self._rows
            self._rows = grown
        self._rows[ids] = rows

    def removed(self, ids: np.ndarray) -> None:
        if self._rows is not None:
            ids = ids[(ids >= 0) & (ids < len(self._rows))]
            self._rows[ids] = -1

    def _build(self, ids: np.ndarray) -> None:
        if len(ids) and (ids.min() < 0 or ids.max() > self._limit(len(ids))):
            self._sparse = True
            return
        self._rows = np.full(int(ids.max()) + 1 if len(ids) else 1, -1, np.int32)
        self._rows[ids] = np.arange(len(ids), dtype=np.int32)

    @staticmethod
    def _limit(count: int) -> int:
        return SPARSE_FACTOR * count + SPARSE_SLACK
