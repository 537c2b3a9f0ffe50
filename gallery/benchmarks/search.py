"""`faceid bench gallery`: one markdown table of the gallery at each size, two rows per size.

`exact`: the exact index (`index="Flat"`) next to raw FAISS `IndexFlatIP` over the same vectors. `auto`: a gallery
created with `index="auto"` (exact up to 10,000 512-d templates, then IVF + fast-scan PQ + exact rescoring, tuned)
next to raw FAISS with the same structure and search parameters: `index_factory`'s `IVF...,RFlat` (`IndexRefineFlat`)
over a clone of the gallery's trained IVF, with its nprobe and k_factor, so both scan the same lists. Columns:
queries/s of top-5 search at batch 1/16/64/256 (best of `ROUNDS` measurements alternated with raw FAISS's; the ratio
to raw FAISS in brackets; FAISS's batch-1 search starts OpenMP threads per call, which a loaded machine punishes most:
take batch-1 ratios from a quiet one); recall@1 against exact search on 1,000 probes at cos 0.7 to an enrolled
template (not the tuner's); recall@1 on held-out real faces (`gallery.benchmarks.real_faces`); build + tune seconds
(auto: a rebuild from gallery.db, what a gallery pays when it grows past a size band); index bytes per template (its
snapshot: what it holds in memory); then, for the auto gallery, the median single-identity enroll and remove (one
template; ratio to the smallest size in brackets), bytes on disk per template (SQLite + snapshot; the write-ahead log
apart, since it is bounded by `store.WAL_LIMIT_BYTES` whatever the size: with 32 KB pages each single write logs about
400 KB until a checkpoint) and the write-ahead log after the bulk enrolment (50,000 identities per transaction) and
after the single writes. The synthetic galleries are `clustered_templates`.

The full run (10k, 100k, 1M) takes about 15 minutes on 2 idle cores (the first run embeds the real faces too,
about 4 minutes more) and needs about 12 GB of memory and 10 GB of disk in the temporary folder; `--quick` runs
1k and 10k.
"""

import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from faceid.gallery.benchmarks import real_faces
from faceid.gallery.benchmarks.data import clustered_templates, index_name, rate
from faceid.gallery.gallery import Gallery
from faceid.gallery.index import tuning
from faceid.gallery.index.faiss_index import VectorIndex

DIM = 512
SEARCH_BATCHES = (1, 16, 64, 256)
PROBES = 1_000
WRITE_RUNS = 31  # the first writes after the bulk load are cold (page faults, lazy state): the median skips them
ROUNDS = 3  # alternated measurements of the gallery and raw FAISS at each batch (`bench_data.MEASURE_SECONDS` each)
CHUNK = 50_000
COLUMNS = ("N", "index", *(f"batch {b} q/s (x raw)" for b in SEARCH_BATCHES), "recall@1 vs exact",
           "real-probe recall@1", "build + tune s", "index B/template", "enroll ms", "remove ms",
           "disk B/template", "WAL MB after bulk / writes")


def run_gallery_benchmark(sizes=(10_000, 100_000, 1_000_000), real: bool = True,
                          data: Path | None = None) -> list[dict]:
    """Measure every size, printing progress, then the table; returns its rows (one dict per table row)."""
    faces = _real_faces(data) if real else None
    rng, rows = np.random.default_rng(0), []
    for size in sizes:
        vectors = clustered_templates(rng, size)
        probes = tuning.noisy_queries(vectors, PROBES, seed=1)  # not the tuner's queries (seed 0)
        with tuning.blas_from(1):
            best = faiss.knn(probes, vectors, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
        exact, built = _timed_build(vectors)
        rows.append(_search_row(size, "exact", exact, (faiss.IndexFlatIP(DIM),), vectors, probes, best,
                                build_seconds=built, index_bytes=_index_bytes(exact)))
        del exact
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(_auto_row(Path(scratch) / "g", vectors, probes, best, faces))
        print(f"{size:,} templates measured", flush=True)
    smallest = next((row for row in rows if row["index"] != "exact"), {})
    print_table(rows, smallest)
    return rows


def _real_faces(data: Path | None):
    reason = real_faces.unavailable(data)
    if reason:
        print(f"real-probe recall skipped: {reason}", flush=True)
        return None
    return real_faces.real_embeddings(data)


def _timed_build(vectors: np.ndarray) -> tuple[VectorIndex, float]:
    index = VectorIndex(DIM, "Flat")
    started = time.perf_counter()
    index.build(np.arange(1, len(vectors) + 1), vectors)
    return index, time.perf_counter() - started


def _index_bytes(index: VectorIndex) -> float:
    """The index serialised (vectors, codes, ids, centroids), per template."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "index.faiss"
        index.save(path)
        return path.stat().st_size / max(1, len(index))


def _auto_row(folder: Path, vectors, probes, best, faces) -> dict:
    """The `auto` gallery: bulk enrolment, a timed rebuild, search against raw FAISS, then single writes."""
    gallery = Gallery.create(folder, fingerprint={"fingerprint": "bench", "embedding_dim": DIM}, index_factory="auto")
    started = time.perf_counter()
    for start in range(0, len(vectors), CHUNK):
        gallery.enroll_many({f"id{start + i}": [vectors[start + i]] for i in range(min(CHUNK, len(vectors) - start))})
    bulk = len(vectors) / (time.perf_counter() - started)
    wal = gallery.stats()["wal_bytes"]
    started = time.perf_counter()
    gallery.rebuild_index("timed by faceid bench gallery")
    built = time.perf_counter() - started
    gallery.snapshot()
    snapshot = folder / gallery.setting("snapshot")["file"]
    row = _search_row(len(vectors), "auto", gallery.index, _raw_like(gallery.index), vectors, probes, best,
                      build_seconds=built, index_bytes=snapshot.stat().st_size / len(vectors))
    if faces is not None:
        row.update(real_faces.real_probe_recall(len(vectors), *faces))
    row.update(_single_writes(gallery, len(vectors)), wal_bytes_after_bulk=wal, bulk_enroll_per_second=bulk)
    stats = gallery.stats()  # the WAL apart: a log of at most `store.WAL_LIMIT_BYTES` whatever the size
    row.update(disk_bytes_per_template=(stats["bytes_on_disk"] - stats["wal_bytes"]) / stats["templates"],
               wal_bytes_after_writes=stats["wal_bytes"])
    gallery.close()
    return row


def _raw_like(index: VectorIndex) -> tuple:
    """Raw FAISS with the structure and search parameters of `index` (see the module doc). Returns the index
    first, then the objects it borrows (kept alive alongside it)."""
    if index.exact:
        return (faiss.IndexFlatIP(DIM),)
    native = index.index
    refined = isinstance(native, faiss.IndexRefine)
    base = faiss.clone_index(faiss.downcast_index(native.base_index) if refined else native)
    faiss.extract_index_ivf(base).nprobe = faiss.extract_index_ivf(
        faiss.downcast_index(native.base_index) if refined else native).nprobe
    if not refined:
        return (base,)
    rows = index.content()[1]  # the rows the IVF names: IndexRefineFlat copies them and rescores by row number
    raw = faiss.IndexRefineFlat(base, faiss.swig_ptr(rows))
    raw.k_factor = index.k_factor
    return raw, base


def _search_row(size: int, kind: str, index: VectorIndex, raw: tuple, vectors, probes, best, **extra) -> dict:
    """Queries/s at each batch for `index` and raw FAISS (`raw[0]`, filled with `vectors` when empty), recall@1."""
    if raw[0].ntotal == 0:
        raw[0].add(vectors)
    row = {"size": size, "index": kind, "built": index_name(index), **extra,
           "recall_at_1": float(np.mean(index.search(probes, 1)[0][:, 0] >= best - 1e-5))}
    for batch in SEARCH_BATCHES:  # alternated, best of ROUNDS each: a passing load on a shared machine hits both
        queries, ours, theirs = probes[:batch], [], []
        for _ in range(ROUNDS):
            ours.append(rate(index.search, batch, queries, 5))
            theirs.append(rate(raw[0].search, batch, queries, 5))
        row[f"batch{batch}"], row[f"raw_batch{batch}"] = max(ours), max(theirs)
    return row


def _single_writes(gallery: Gallery, size: int) -> dict:
    """Median single-identity remove, then enroll (removals first, so the size never crosses `auto`'s band)."""
    removes, enrolls = [], []
    for i in range(WRITE_RUNS):
        started = time.perf_counter()
        gallery.remove(f"id{i}")
        removes.append(time.perf_counter() - started)
    for i, vector in enumerate(clustered_templates(np.random.default_rng(size), WRITE_RUNS)):
        started = time.perf_counter()
        gallery.enroll(f"extra{i}", [vector])
        enrolls.append(time.perf_counter() - started)
    return {"enroll_median_s": float(np.median(enrolls)), "remove_median_s": float(np.median(removes))}


def print_table(rows: list[dict], smallest: dict) -> None:
    """The markdown table of `run_gallery_benchmark`'s rows (ratios of writes to `smallest`'s)."""
    print("\nfaceid bench gallery  (512-d clustered templates; top-5 search; (x raw) = gallery / raw FAISS, "
          "same run; writes, disk and WAL: the auto gallery, (x) = / the smallest size)\n")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = [f"{row['size']:,}", f"{row['index']}: {row['built']}"]
        cells += [f"{row[f'batch{b}']:,.0f} ({row[f'batch{b}'] / row[f'raw_batch{b}']:.2f}x)" for b in SEARCH_BATCHES]
        cells += [f"{row['recall_at_1']:.3f}", _real_cell(row), f"{row['build_seconds']:.1f}",
                  f"{row['index_bytes']:,.0f}"]
        if "enroll_median_s" in row:
            cells += [_write_cell(row, smallest, "enroll_median_s"), _write_cell(row, smallest, "remove_median_s"),
                      f"{row['disk_bytes_per_template']:,.0f}",
                      f"{row['wal_bytes_after_bulk'] / 2**20:.1f} / {row['wal_bytes_after_writes'] / 2**20:.1f}"]
        else:
            cells += ["-"] * 4
        print("| " + " | ".join(cells) + " |", flush=True)


def _real_cell(row: dict) -> str:
    if "real_recall_at_1" not in row:
        return "-"
    return f"{row['real_recall_at_1']:.3f} ({row['real_probes']} probes, 128-d {row['real_index']})"


def _write_cell(row: dict, smallest: dict, key: str) -> str:
    return f"{1e3 * row[key]:.2f} ({row[key] / smallest[key]:.2f}x)"
