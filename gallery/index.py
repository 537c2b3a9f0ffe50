"""The gallery's vector index: FAISS over L2-normalised vectors with inner product.

The default `Flat` is exact search behind an id map (ids are the template row ids, stable and
removable). Any FAISS factory string works (`HNSW32,Flat`, `IVF4096,Flat`, `IVF4096,PQ64`...):
indexes that need training are trained on the enrolled vectors, and those that cannot remove
ids are rebuilt from the store. Search parameters (`nprobe`, `efSearch`) are set through FAISS's
ParameterSpace.

Exact search at small query batches is memory-bound: a BLAS matrix-vector product over the stored
vectors plus a partial sort beats FAISS's flat scan there, so the exact path uses it for batches
below `BLAS_BATCH` and FAISS above.

On disk the index is `index.<generation>.faiss`, written with `faceid.files.atomic_write` (durable: a
temporary `.index.<generation>.<random>.tmp.faiss` beside it, fsynced, renamed, directory fsynced); a
file whose generation differs from the store's is stale and is rebuilt from the store.
"""

from pathlib import Path

import faiss
import numpy as np

from faceid.files import atomic_write

BLAS_BATCH = 8


class VectorIndex:
    """FAISS index of `dim`-d unit vectors under int64 ids (template or identity row ids), inner-product search.

    `factory` is any FAISS factory string; `search_parameters` are applied after each build or load; `gpu`
    searches on a GPU copy. The index lives in memory and is saved per generation (see the module doc).
    """

    def __init__(self, dim: int, factory: str = "Flat", search_parameters: dict | None = None, gpu: bool = False):
        if gpu and not hasattr(faiss, "StandardGpuResources"):
            raise ValueError("GPU FAISS was asked for but this FAISS has no GPU support "
                             "(install the gpu extra: faiss-gpu)")
        self.dim, self.factory, self.gpu = dim, factory, gpu
        self._gpu_resources = faiss.StandardGpuResources() if gpu else None
        self._gpu_index = None
        self.search_parameters = dict(search_parameters or {})
        self.index = self._empty()
        self.ids, self._matrix = np.zeros(0, np.int64), None

    @property
    def exact(self) -> bool:
        return self.factory.strip() == "Flat"

    def _empty(self):
        try:
            inner = faiss.index_factory(self.dim, self.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as error:
            raise ValueError(f"FAISS cannot build index {self.factory!r}: {error}") from None
        return inner if isinstance(inner, faiss.IndexIDMap) else faiss.IndexIDMap2(inner)

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the content with `vectors` (N, d) under `ids`, training the index when it needs it."""
        self.index = self._empty()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if not self.index.is_trained:
            if len(vectors) == 0:
                self._sync()
                return
            self.index.train(vectors)
        if len(vectors):
            self.index.add_with_ids(vectors, np.asarray(ids, np.int64))
        self._sync()
        self._apply_parameters()

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> bool:
        """Append vectors in place; False when the index cannot (untrained), so the caller rebuilds."""
        if not self.index.is_trained:
            return False
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim),
                                np.asarray(ids, np.int64))
        self._sync()
        return True

    def remove(self, ids: np.ndarray) -> bool:
        """Remove ids in place; False when this index type cannot remove (e.g. HNSW), so the caller rebuilds."""
        try:
            self.index.remove_ids(np.asarray(ids, np.int64))
        except RuntimeError:
            return False
        self._sync()
        return True

    def _apply_parameters(self) -> None:
        if self.search_parameters:
            space = faiss.ParameterSpace()
            for name, value in self.search_parameters.items():
                space.set_index_parameter(self.index, name, value)

    def _sync(self) -> None:
        """After any change: the id order, (exact index) a no-copy view of the stored vectors, and the GPU copy."""
        self.ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        self._gpu_index = None
        if self._gpu_resources is not None and self.index.ntotal:
            self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self.index)
        self._matrix = None
        if self.exact and self.index.ntotal:
            flat = faiss.downcast_index(self.index.index)
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
        if self._matrix is not None and len(queries) < BLAS_BATCH:
            scores = queries @ self._matrix.T
            top = (np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1]
                   else np.tile(np.arange(k), (len(queries), 1)))
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1)
            return np.take_along_axis(top_scores, order, 1), self.ids[np.take_along_axis(top, order, 1)]
        return (self._gpu_index or self.index).search(queries, k)

    def save(self, folder: Path, generation: int) -> Path:
        """Write `index.<generation>.faiss` atomically and durably, then delete the other generations' files."""
        target = Path(folder) / f"index.{generation}.faiss"
        with atomic_write(target, durable=True) as temporary:
            faiss.write_index(self.index, str(temporary))
        for stale in Path(folder).glob("index.*.faiss"):
            if stale != target:
                stale.unlink(missing_ok=True)
        return target

    def load(self, folder: Path, generation: int, expected_ids: np.ndarray) -> bool:
        """Load the index of `generation`; False when it is missing or does not hold `expected_ids`."""
        path = Path(folder) / f"index.{generation}.faiss"
        if not path.is_file():
            return False
        try:
            index = faiss.read_index(str(path))
        except RuntimeError:
            return False
        if index.ntotal != len(expected_ids) or index.d != self.dim:
            return False
        self.index = index if isinstance(index, faiss.IndexIDMap) else faiss.IndexIDMap2(index)
        stored = faiss.vector_to_array(self.index.id_map)
        if not np.array_equal(np.sort(stored), np.sort(expected_ids)):
            return False
        self._sync()
        self._apply_parameters()
        return True
