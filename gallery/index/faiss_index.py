"""The gallery's vector index: FAISS over L2-normalised vectors with inner product.

The default `Flat` is exact search behind an id map (ids are the template row ids, stable and
removable). Any FAISS factory string works (`HNSW32,Flat`, `IVF4096,PQ64`...): indexes that need training
are trained on the enrolled vectors, those that cannot remove ids are rebuilt from the store. Search parameters
(`nprobe`, `efSearch`) are set through FAISS's ParameterSpace. `auto` picks exact or an inverted file by size
and, like any index with a search parameter given no explicit value, tunes nprobe / efSearch to recall@1 0.99
on every (re)build (see `gallery.index.tuning`).

Exact search is memory-bound. Below `FAISS_BATCH` queries one BLAS product of the queries with the stored
vectors plus a partial sort beats FAISS's flat search, in blocks of queries whose scores stay under
`SCORE_BLOCK` floats; from `FAISS_BATCH` up FAISS's own search wins and takes over (the measurements behind
both thresholds: docs/gallery.md). A GPU copy takes exact batches from `BLAS_BATCH` up.

Enrolments and removals change the index in place: adding appends, and removing from the exact index
moves the last vectors into the freed rows, so both cost the same at 10k and at 1M vectors. Indexes
that cannot (HNSW cannot remove, an untrained IVF cannot add) say so and the caller rebuilds them.

On disk the index is a snapshot (`gallery.index.live_index` decides when and names it): `save` writes it with
`faceid.files.atomic_write` (durable: a temporary `.index.<generation>.<random>.tmp.faiss` beside it,
fsynced, renamed, directory fsynced) and returns its CRC-32, which `load` checks before FAISS reads a byte.
"""

import zlib
from pathlib import Path

import faiss
import numpy as np

from faceid.files import atomic_write, file_checksum
from faceid.gallery.index import tuning
from faceid.gallery.index.backend import BACKENDS, BackendCapabilities
from faceid.gallery.index.faiss_layout import parts, refined_index, stored_ids, with_ids
from faceid.gallery.index.id_rows import IdRows

BLAS_BATCH = 8
FAISS_BATCH = 128
SCORE_BLOCK = 1 << 26  # floats (256 MB) of query x vector scores per block of the exact path


@BACKENDS.register("faiss")
class VectorIndex:
    """A `SnapshotBackend` (`gallery.index.backend`): FAISS index of `dim`-d unit vectors under int64 ids
    (template or identity row ids), inner-product search.

    `factory` is any FAISS factory string or `auto`; `search_parameters` are applied after each build or load, else
    the tuned value (`tuning`, kept in `settings`, the gallery's store, when given); `gpu` searches on a GPU copy.
    Real probe embeddings (n, dim) join the tuner's self-queries at every (re)tune: `tuning_queries` when a caller
    sets them, else those stored in `settings` by `gallery tune --probes` (`tuning.stored_probes`).
    The index lives in memory and is saved per generation (see the module doc).
    """

    def __init__(self, dim: int, factory: str = "Flat", search_parameters: dict | None = None, gpu: bool = False,
                 settings=None):
        if gpu and not hasattr(faiss, "StandardGpuResources"):
            raise ValueError("GPU FAISS was asked for but this FAISS has no GPU support "
                             "(install the gpu extra: faiss-gpu)")
        self.dim, self.factory, self.gpu = dim, factory, gpu
        self._gpu_resources = faiss.StandardGpuResources() if gpu else None
        self._gpu_index = None
        self.search_parameters = dict(search_parameters or {})
        self.settings, self.tuning, self.tuning_queries = settings, None, None
        self.built_factory = "Flat" if factory == tuning.AUTO else factory
        self.index = self._empty()
        self.ids, self._matrix, self.k_factor = np.zeros(0, np.int64), None, tuning.K_FACTORS[-1]
        self.rows = IdRows()  # id -> row of the exact index or of a refined index's full vectors

    @classmethod
    def describe(cls, folder: Path, dim: int, index: str) -> dict:
        """Nothing beyond the gallery's own settings (its `index_factory`); a bad factory string fails here."""
        cls(dim, index)
        return {}

    @classmethod
    def open(cls, dim: int, description: dict, settings, gpu: bool = False) -> "VectorIndex":
        return cls(dim, settings.get("index_factory"), settings.get("search_parameters"), gpu, settings)

    @property
    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(snapshots=True, tunes_search=True)

    @property
    def exact(self) -> bool:
        return self.built_factory.strip() == "Flat"

    @property
    def tunable(self) -> bool:
        """Whether a search parameter (nprobe, efSearch) trades speed for recall: False for exact search."""
        return tuning.search_parameter(parts(self.index)[0]) is not None

    def _empty(self):
        try:
            inner = refined_index(self.built_factory, self.dim) or faiss.index_factory(
                self.dim, self.built_factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(f"FAISS cannot build index {self.factory!r}: {error}") from None
        return with_ids(inner)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the content with `vectors` (N, d) under `ids`, training the index when it needs it."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self.factory == tuning.AUTO:
            self.built_factory = tuning.choose_factory(len(vectors), self.dim)
        self.index, self.tuning = self._empty(), None
        self.rows.reset()
        if not self.index.is_trained:
            if len(vectors) == 0:
                self._sync()
                return
            self.index.train(tuning.training_sample(self.index, vectors))
        if len(vectors):
            self._add(np.asarray(ids, np.int64), vectors)
        self._sync()
        self._apply_parameters()
        self._tune(vectors)

    def _tune(self, vectors: np.ndarray, queries: np.ndarray | None = None) -> None:
        """After a build with no explicit search parameters: tune (`auto`: record also an exact index), versioned."""
        if self.search_parameters or not (self.factory == tuning.AUTO or tuning.search_parameter(self.index)):
            return
        if queries is None:
            queries = self.tuning_queries if self.tuning_queries is not None else tuning.stored_probes(
                self.settings, self.dim)
        base, store = parts(self.index)
        record = tuning.tune(base, vectors, queries, self.built_factory, search=self.search,
                             set_parameter=self._set_parameter, refine=store is not None)
        self.tuning = {**(record or tuning.exact_record(self.built_factory, len(vectors), self.dim)),
                       "version": tuning.next_version(self.settings)}

    def retune(self, vectors: np.ndarray, queries: np.ndarray) -> dict | None:
        """Tune again over `vectors` (the index's content) with real probe embeddings `queries` joining the
        self-queries (the caller stores them; without `settings` they stay for later rebuilds). Returns the record."""
        if self.settings is None:
            self.tuning_queries = queries
        self._tune(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim), queries)
        return self.tuning

    def _adopt_stored_tuning(self) -> None:
        """After a load: what `auto` built, and the stored tuning record when it was made for that structure."""
        if self.factory == tuning.AUTO:
            ivf = faiss.try_extract_index_ivf(self.index)
            self.built_factory = "Flat" if ivf is None else (
                f"IVF{ivf.nlist},{tuning.codes(self.dim)},RFlat" if parts(self.index)[1] else f"IVF{ivf.nlist},Flat")
        self.tuning = tuning.newer_record(self.settings, None, self.built_factory)

    def follow_tuning(self) -> None:
        """After a replay: take and apply a newer stored record made for this structure (`tuning.newer_record`)."""
        record = tuning.newer_record(self.settings, self.tuning, self.built_factory)
        if record is not None:
            self.tuning = record
            self._apply_parameters()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Append vectors in place; False when the index cannot (untrained), so the caller rebuilds."""
        grown = self.factory == tuning.AUTO and tuning.choose_factory(
            len(self) + len(ids), self.dim) != self.built_factory  # rebuilt (and retuned) as the next size band
        if grown or not self.index.is_trained:
            return False
        self._add(np.asarray(ids, np.int64), np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim))
        self._sync()
        return True

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        base, store = parts(self.index)
        if self.exact or store is not None:
            self.rows.added(ids, len(self))
        if store is None:
            base.add_with_ids(vectors, ids)
            return
        base.add_with_ids(vectors, np.arange(len(self), len(self) + len(ids)))  # the IVF names rows of the store
        store.add_with_ids(vectors, ids)
        self.index.ntotal = base.ntotal

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids in place (absent ones are ignored); False when this index type cannot remove (e.g. HNSW),
        so the caller rebuilds."""
        base, store = parts(self.index)
        if self.exact or store is not None:
            rows = self.rows.find(self.ids, ids)
            if self.exact:
                self._remove_exact(self.index, rows)
            elif len(rows):
                self._remove_refined(base, store, rows)
            return True
        try:
            base.remove_ids(np.asarray(ids, np.int64))
        except RuntimeError:
            return False
        self._sync()
        return True

    def _remove_refined(self, base, store, rows: np.ndarray) -> None:
        """Free `rows` of a refined index: the full vectors as in the exact index (the last rows move into the
        holes), and in the IVF, which names rows, the freed and the moved rows go and the moved vectors come back
        under their new rows (same list, same codes). FAISS finds them by scanning the lists' ids (fast-scan lists
        have no id map): one O(N) pass in C++, no sorting."""
        keep = len(self) - len(rows)
        base.remove_ids(np.union1d(rows, np.arange(keep, len(self))))
        self._remove_exact(store, rows)
        holes = rows[rows < keep]
        base.add_with_ids(self._matrix[holes], holes)
        self.index.ntotal = base.ntotal

    def _remove_exact(self, mapped, rows: np.ndarray) -> None:
        """Free `rows` of the exact index by moving the last live rows into them, then dropping the tail:
        O(removed) instead of FAISS's O(N) compaction."""
        total, keep = len(self), len(self) - len(rows)
        holes = rows[rows < keep]
        movers = np.setdiff1d(np.arange(keep, total), rows)
        self.rows.removed(self.ids[rows])
        self._matrix[holes], self.ids[holes] = self._matrix[movers], self.ids[movers]
        self.rows.moved(self.ids[holes], holes)
        flat = faiss.downcast_index(mapped.index)
        flat.codes.resize(keep * flat.code_size)  # drop the tail: nothing moves, nothing is scanned
        flat.ntotal = keep
        mapped.id_map.resize(keep)
        mapped.ntotal = keep
        self._sync()

    def _apply_parameters(self) -> None:
        tuned = {self.tuning["parameter"]: self.tuning["value"]} if self.tuning and self.tuning["parameter"] else {}
        if tuned and "k_factor" in self.tuning:
            tuned["k_factor"] = self.tuning["k_factor"]
        for name, value in (self.search_parameters or tuned).items():
            self._set_parameter(name, value)

    def _set_parameter(self, name: str, value) -> None:
        """A search parameter: `k_factor` (candidates per result rescored exactly, refined indexes) or FAISS's."""
        if name == "k_factor":
            self.k_factor = max(1, int(value))
        else:
            faiss.ParameterSpace().set_index_parameter(parts(self.index)[0], name, value)

    def _sync(self) -> None:
        """After any change: the id order, (exact index) a no-copy view of the stored vectors, and the GPU copy."""
        self.ids = stored_ids(self.index)
        self._gpu_index = None
        if self._gpu_resources is not None and self.index.ntotal and parts(self.index)[1] is None:
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
        self._matrix = None
        mapped = self.index if self.exact else parts(self.index)[1]
        if mapped is not None and mapped.ntotal:
            flat = faiss.downcast_index(mapped.index)
            self._matrix = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * self.dim).reshape(flat.ntotal, self.dim)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def close(self) -> None:
        """Nothing to release: the index lives in memory and its file is closed after each write."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best per query; -1 ids pad when fewer vectors exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self))) if len(self) else 0
        if k == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self._matrix is not None and not self.exact:
            return self._refine(queries, k)
        if self._matrix is not None and len(queries) < (FAISS_BATCH if self._gpu_index is None else BLAS_BATCH):
            block = max(1, SCORE_BLOCK // len(self))
            found = [self._exact(queries[start:start + block], k) for start in range(0, max(1, len(queries)), block)]
            return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
        return (self._gpu_index or self.index).search(queries, k)

    def _refine(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The IVF's `k * k_factor` best by its compressed codes, rescored exactly with the full vectors: the
        returned scores are the exact inner products."""
        rows = parts(self.index)[0].search(queries, min(len(self), k * self.k_factor))[1]
        scores = np.einsum("qd,qcd->qc", queries, self._matrix[np.maximum(rows, 0)])
        scores[rows < 0] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, top, 1)
        ids = np.where(np.isfinite(top_scores), self.ids[np.maximum(np.take_along_axis(rows, top, 1), 0)], -1)
        return np.where(ids >= 0, top_scores, -np.inf).astype(np.float32), ids

    def _exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self._matrix.T
        top = (np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1]
               else np.tile(np.arange(k), (len(queries), 1)))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        return np.take_along_axis(top_scores, order, 1), self.ids[np.take_along_axis(top, order, 1)]

    def save(self, path: Path) -> int:
        """Write the index to `path` atomically and durably; returns the file's CRC-32."""
        checksum = 0
        with atomic_write(path, durable=True) as temporary, open(temporary, "wb") as handle:
            def write(chunk: bytes) -> None:
                nonlocal checksum
                checksum = zlib.crc32(chunk, checksum)
                handle.write(chunk)

            faiss.write_index(self.index, faiss.PyCallbackIOWriter(write))
        return checksum

    def load(self, path: Path, checksum: int) -> str | None:
        """Load the index at `path` if its CRC-32 is `checksum`; else why not (nothing is parsed before the
        checksum matches, so a damaged file is never searched)."""
        try:
            found = file_checksum(path)
        except FileNotFoundError:
            return f"the snapshot {Path(path).name} is missing"
        if found != checksum:
            return f"the snapshot {Path(path).name} is damaged (CRC-32 {found:08x}, recorded {checksum:08x})"
        index = faiss.read_index(str(path))
        if index.d != self.dim or with_ids(index) is not index:
            return f"the snapshot {Path(path).name} does not hold a {self.dim}-d index with ids"
        base, store = parts(index)
        if store is not None and not np.array_equal(np.sort(stored_ids(base)), np.arange(store.ntotal)):
            return f"the snapshot {Path(path).name} has inverted lists that do not name its rows (an older layout)"
        self.index = index
        self.rows.reset()
        self._adopt_stored_tuning()
        self._sync()
        self._apply_parameters()
        return None

    def content(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(ids, their vectors) as stored, for checking against the store; vectors None where the codes are
        lossy or cannot be read back."""
        if self._matrix is not None:
            return self.ids.copy(), self._matrix[:len(self.ids)].copy()
        if not self.factory.replace(" ", "").endswith(",Flat"):
            return self.ids.copy(), None
        try:
            return self.ids.copy(), self.index.index.reconstruct_n(0, len(self))
        except RuntimeError:
            return self.ids.copy(), None
