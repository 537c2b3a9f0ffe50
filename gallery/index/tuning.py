"""Approximate search that tunes itself: the `auto` index choice and the nprobe / efSearch tuner.

`choose_factory` picks what `index="auto"` builds. Exact `Flat` while the index holds at most
`EXACT_MAX_FLOATS` floats (10,000 templates of 512-d, 20 MB): one pass over them is cheap, and exact search needs
no training or tuning and is never wrong. Past it exact time grows linearly while a tuned inverted file's does
not. Above it, `IVF{lists},PQ{dim/8}x4fs,RFlat` with lists the power of two nearest 2*sqrt(N): the lists hold
4-bit fast-scan PQ codes (32 bytes per 512-d template) and the tuned `k_factor` * k best by code are rescored with
the full vectors kept beside them, so returned scores are the exact inner products compared to the calibrated
threshold. Scanning the codes, not choosing the lists, is what costs at a million templates, which is why the
lists hold compact codes rather than full vectors. Dimensions not divisible by 16 keep `IVF{lists},Flat`. An
inverted file supports in-place add and `remove_ids` (an HNSW graph cannot remove, so every removal would
rebuild it) and trains quickly (k-means on `TRAIN_POINTS_PER_LIST` vectors per list). The coarse quantizer is
exact: an HNSW one saves part of the centroid scan but misses lists, which caps recall. A gallery grown past its
next size band is rebuilt (and retuned) on the next write: O(1) amortised per template. The measurements behind
these choices are in docs/gallery.md.

`tune` runs whenever an index with a search parameter is (re)built without explicit parameters: it
makes held-out self-queries (enrolled vectors plus Gaussian noise scaled so that cos(q, x) is about
`QUERY_COSINE`; a second photo of an enrolled person), adds any real probe embeddings the caller
passes (`faceid gallery tune --probes`, `gallery.index.probe_tuning`), takes exact inner-product search over the same
vectors as ground truth, and sweeps nprobe
(IVF) or efSearch (HNSW) upwards in powers of two, then bisects between the last one short of
`TUNED_RECALL` and the first to reach it (to within 1/8). The tuner asks 0.995 of its 2,000 self-queries
so that queries it has not seen reach `TARGET_RECALL`, 0.99: a recall measured on n queries is off by
sqrt(r(1 - r) / n), 0.0022 here. Search time grows with the parameter, so the
smallest value whose recall@1 reaches the target is the fastest that does; with real probes, recall@1 must
reach it on the self-queries and on the real probes each (`real_recall_at_1`). A hit is a top-1 score equal to
the exact best (so duplicate vectors are not misses). A refined index is swept at `K_FACTORS[-1]`, then its
`k_factor` lowered while the target holds (the record's `k_factor`). The record is kept in the gallery's settings
(`SETTING`) and applied again when the index file is loaded.

Records are ordered by `version`: a new tuning takes the stored record's version + 1, and `save_record` writes only
a record newer than the stored one, so a process opened before another's `gallery tune` (or rebuild) never writes
its older parameters back with its next snapshot. `gallery tune` bumps the generation, so every other process meets
the newer record when it next replays the change log (`newer_record`) and applies it. The real probes given to
`gallery tune` are stored in gallery.db (`stored_probes`) and join the self-queries of every later (re)tune.
"""

import logging
import math
import time
from contextlib import contextmanager

import faiss
import numpy as np

from faceid.arrays import l2_normalize

AUTO = "auto"
EXACT_MAX_FLOATS = 10_000 * 512
TARGET_RECALL = 0.99  # the promise: recall@1 against exact search on queries the tuner has not seen
TUNED_RECALL = 0.995  # what the tuner asks of its own queries, so that fresh ones still reach TARGET_RECALL
QUERY_COSINE = 0.7
QUERIES = 2_000
TIMED_QUERIES = 50
TRAIN_POINTS_PER_LIST = 40
KMEANS_ITERATIONS = 10
K_FACTORS = (1, 2, 4, 8, 16, 32, 64, 128)
SETTING = "index_tuning"
log = logging.getLogger("faceid.gallery")


@contextmanager
def blas_from(batch: int):
    """FAISS's exact search takes BLAS from `batch` queries up (1.15's default threshold, 128,000 queries, scans
    the vectors once per query: 500 scans of 1M vectors for the tuner's ground truth); restored afterwards."""
    previous = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = batch
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = previous


def choose_factory(size: int, dim: int) -> str:
    """The factory string `index="auto"` builds for `size` vectors of `dim` dimensions (see the module doc)."""
    if size * dim <= EXACT_MAX_FLOATS:
        return "Flat"
    lists = 2 ** round(math.log2(2 * math.sqrt(size)))
    return f"IVF{lists},{codes(dim)},RFlat" if dim % 16 == 0 else f"IVF{lists},Flat"


def codes(dim: int) -> str:
    """The compressed codes `auto`'s inverted lists scan: 4-bit fast-scan PQ, one sub-quantizer per 8 dimensions
    (32 bytes for 512-d; one per 2 below 256-d, where 8 dimensions in 16 centroids lose too much); the full vectors
    beside them give the exact scores (`RFlat`)."""
    return f"PQ{dim // 8 if dim >= 256 else dim // 2}x4fs"


def _training_rows(index, size: int) -> np.ndarray:
    """The rows an IVF index is trained on: a seeded sample of `TRAIN_POINTS_PER_LIST` per list (all, if fewer)."""
    ivf = faiss.try_extract_index_ivf(index)
    count = size if ivf is None else min(size, TRAIN_POINTS_PER_LIST * ivf.nlist)
    return np.sort(np.random.default_rng(0).choice(size, count, replace=False)) if count < size else np.arange(size)


def training_sample(index, vectors: np.ndarray) -> np.ndarray:
    """What to train `index` on: for an IVF index, `_training_rows` and `KMEANS_ITERATIONS` k-means iterations
    (more would buy build time, not search quality)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        ivf.cp.niter = KMEANS_ITERATIONS
    return vectors[_training_rows(index, len(vectors))]


def search_parameter(index) -> tuple[str, list[int]] | None:
    """(name, candidate values, ascending) of the parameter that trades speed for recall, or None (exact)."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return "nprobe", [2 ** i for i in range(int(math.log2(ivf.nlist)) + 1)] + (
            [ivf.nlist] if ivf.nlist & (ivf.nlist - 1) else [])
    inner = faiss.downcast_index(index.index if isinstance(index, faiss.IndexIDMap) else index)
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch", [16 * 2 ** i for i in range(8)]
    return None


def noisy_queries(vectors: np.ndarray, count: int, cosine: float = QUERY_COSINE, seed: int = 0) -> np.ndarray:
    """`count` of `vectors` plus isotropic noise of norm sqrt(1/cosine^2 - 1), normalised: cos(q, x) ~ cosine."""
    rng = np.random.default_rng(seed)
    chosen = vectors[rng.choice(len(vectors), min(count, len(vectors)), replace=False)]
    sigma = math.sqrt(1 / cosine ** 2 - 1) / math.sqrt(vectors.shape[1])
    return l2_normalize(chosen + rng.standard_normal(chosen.shape, dtype=np.float32) * np.float32(sigma), axis=1)


def tune(index, vectors: np.ndarray, extra_queries: np.ndarray | None = None, factory: str = "",
         target: float = TUNED_RECALL, queries: int = QUERIES, seed: int = 0, search=None,
         set_parameter=None, refine: bool = False) -> dict | None:
    """Set the fastest parameter value of `index` (holding `vectors`) with recall@1 >= `target` against exact
    search and return the record (see the module doc); None when the index is exact. `search(queries, k)` and
    `set_parameter(name, value)` default to the index's own; with `refine` the candidates per result
    (`k_factor`) are tuned too, after nprobe (found with `K_FACTORS[-1]`)."""
    parameter = search_parameter(index)
    if parameter is None or not len(vectors):
        return None
    started = time.perf_counter()
    name, values = parameter
    held_out = np.setdiff1d(np.arange(len(vectors)), _training_rows(index, len(vectors)))  # not k-means input
    probes = noisy_queries(vectors[held_out] if len(held_out) else vectors, queries, seed=seed)
    real = 0 if extra_queries is None else len(extra_queries)
    if real:
        extra = np.asarray(extra_queries, np.float32)
        if extra.ndim != 2 or extra.shape[1] != vectors.shape[1]:
            raise ValueError(f"tuning queries must be (n, {vectors.shape[1]}) embeddings, got shape {extra.shape}")
        probes = np.concatenate([probes, l2_normalize(extra, axis=1)])
    with blas_from(1):
        best = faiss.knn(probes, vectors, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
    space, sweep = faiss.ParameterSpace(), []
    search = search or index.search
    set_parameter = set_parameter or (lambda key, value: space.set_index_parameter(index, key, value))
    if refine:
        set_parameter("k_factor", K_FACTORS[-1])

    groups = [slice(0, len(probes) - real)] + ([slice(len(probes) - real, None)] if real else [])

    def recalls() -> list[float]:
        """recall@1 of the self-queries and (if any) of the real probes: each must reach the target."""
        found = search(probes, 1)[0][:, 0] >= best - 1e-5
        return [float(np.mean(found[group])) for group in groups]

    def hits() -> float:
        return min(recalls())

    def recall(value: int) -> float:
        set_parameter(name, value)
        sweep.append([value, hits()])
        return sweep[-1][1]

    high = next((v for v in values if recall(v) >= target), values[-1])
    low = max((v for v, r in sweep if r < target), default=0)
    while high - low > max(1, high // 8):  # bisect between the last power of two short of the target and it
        middle = (low + high) // 2
        low, high = (low, middle) if recall(middle) >= target else (middle, high)
    chosen = next(r for v, r in reversed(sweep) if v == high)
    set_parameter(name, high)
    extra_record = {}
    if refine:  # the fewest candidates that keep the target (their exact rescoring is cheap; fewer is faster)
        k_factor, k_sweep = K_FACTORS[-1], []
        for value in reversed(K_FACTORS[:-1]):
            set_parameter("k_factor", value)
            k_sweep.append([value, hits()])
            if k_sweep[-1][1] < target:
                break
            k_factor, chosen = value, k_sweep[-1][1]
        set_parameter("k_factor", k_factor)
        extra_record = {"k_factor": k_factor, "k_factor_sweep": k_sweep}
    real_recall = recalls()[1] if real else None
    timed = probes[:TIMED_QUERIES]
    clock = time.perf_counter()
    for row in range(len(timed)):
        search(timed[row:row + 1], 1)
    return {"factory": factory, "parameter": name, "value": high, **extra_record, "recall_at_1": chosen,
            "real_recall_at_1": real_recall, "target_recall": target, "queries": len(probes), "real_queries": real,
            "query_cosine": QUERY_COSINE,
            "ms_per_query": 1000 * (time.perf_counter() - clock) / len(timed), "size": len(vectors),
            "sweep": sweep, "seconds": time.perf_counter() - started}


def exact_record(factory: str, size: int, dim: int) -> dict:
    """The record of an `auto` index that is still exact: nothing to tune, recall 1."""
    return {"factory": factory, "parameter": None, "value": None, "recall_at_1": 1.0, "size": size,
            "exact_up_to": EXACT_MAX_FLOATS // dim}


def version(record: dict | None) -> int:
    """The order of tuning records (0: none, or a record stored before records had versions)."""
    return int((record or {}).get("version", 0))


def next_version(store) -> int:
    """The version of a tuning made now: newer than the stored record."""
    return version(load_record(store)) + 1


def load_record(store) -> dict | None:
    return store.get(SETTING) if store is not None else None


def newer_record(store, current: dict | None, factory: str) -> dict | None:
    """The stored record when it was made for `factory` and is not older than `current` but differs from it
    (another process tuned, or saved its own tuning of the same rebuild first); else None."""
    record = load_record(store)
    if record is None or record.get("factory") != factory or record == current or version(record) < version(current):
        return None
    return record


def save_record(write, record: dict | None) -> None:
    """Store the tuning of a snapshot's index, in the transaction (`StoreWrite`) that records the snapshot (or
    `gallery tune`'s), under the writer lock: a reader that rebuilds its own copy in memory writes nothing. Only a
    record newer than the stored one is written (see the module doc)."""
    if record is not None and version(record) > version(load_record(write.store)):
        write.set(SETTING, record)


def stored_probes(store, dim: int) -> np.ndarray | None:
    """The real probe embeddings stored by `gallery tune --probes`, or None; a set of another dimension (left by
    another embedder) is not used, with a warning."""
    probes = store.tuning_probes() if store is not None else None
    if probes is None or not len(probes):
        return None
    if probes.shape[1] != dim:
        log.warning("%s: %d stored tuning probes are %d-d, the gallery holds %d-d vectors: not used (run "
                    "`faceid gallery tune --probes` again)", store.path.parent, len(probes), probes.shape[1], dim)
        return None
    return probes
