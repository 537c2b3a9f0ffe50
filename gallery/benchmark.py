"""`faceid bench gallery`: search and enrollment speed of the gallery against raw FAISS and a numpy
brute-force baseline measured in the same run, recall of approximate indexes, and size on disk;
(`run_write_benchmark`) single-identity enroll and remove times at each size against the smallest; and
`faceid bench gallery-search` (`run_search_benchmark`): the gallery's exact and `auto` indexes at batch
1/16/64/256 next to raw FAISS (IndexFlatIP, default settings) in the same run, the tuned recall@1,
build + tuning time and memory per template.

Exact search at batch 1 is memory-bound: numpy's matrix-vector product plus argpartition streams
the vectors once, so its rate is the bandwidth bound the gallery's exact path is compared with.
"""

import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from faceid.arrays import l2_normalize
from gallery import tuning
from gallery.gallery import Gallery
from gallery.index import VectorIndex

DIM = 512
MEASURE_SECONDS = 1.5  # how long each rate is measured
SEARCH_BATCHES = (1, 16, 64, 256)
LATENT_DIM = 64  # face embeddings have a low intrinsic dimension: identity centres span a subspace


def _rate(function, queries: int, *arguments) -> float:
    """Queries per second of `function(*arguments)`, which answers `queries` queries per call."""
    seconds = MEASURE_SECONDS
    function(*arguments)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        function(*arguments)
        count += queries
    return count / (time.perf_counter() - started)


def _unit(rng, n):
    return l2_normalize(rng.standard_normal((n, DIM), dtype=np.float32), axis=1)


def _brute_force(queries, vectors, k: int = 5):
    return np.argpartition(-(queries @ vectors.T), k, axis=1)[:, :k]


def build_gallery(folder: Path, vectors: np.ndarray, factory: str = "Flat", parameters=None, chunk: int = 50_000,
                  backend: str = "faiss"):
    gallery = Gallery.create(folder, fingerprint={"fingerprint": "bench", "embedding_dim": DIM},
                             index_factory=factory, search_parameters=parameters, backend=backend)
    started = time.perf_counter()
    for start in range(0, len(vectors), chunk):
        gallery.enroll_many({f"id{start + i}": [vectors[start + i]] for i in range(min(chunk, len(vectors) - start))})
    return gallery, len(vectors) / (time.perf_counter() - started)


def run_gallery_benchmark(sizes=(10_000, 100_000, 1_000_000), approximate_at: int = 100_000,
                          factories: tuple[str, ...] = ("HNSW32,Flat", "IVF{lists},Flat", "IVF{lists},PQ64"),
                          ) -> list[dict]:
    """The full run takes about 15 minutes and 10 GB of disk (the 1M gallery); `--quick` runs 1k and 10k."""
    rng = np.random.default_rng(0)
    rows = []
    print("faceid bench gallery  (512-d unit vectors, exact = Flat; queries/s; ratios in brackets)")
    print(f"{'N':>9} {'batch':>6} {'numpy brute force':>18} {'raw FAISS Flat':>16} {'gallery':>10} "
          f"{'gallery/numpy':>14} {'gallery/FAISS':>14}")
    for size in sizes:
        vectors = _unit(rng, size)
        queries = _unit(rng, 256)
        with tempfile.TemporaryDirectory() as scratch:
            gallery, enroll_rate = build_gallery(Path(scratch) / "g", vectors)
            raw = faiss.IndexFlatIP(DIM)
            raw.add(vectors)
            for batch in (1, 256):
                q = queries[:batch]
                numpy_rate = _rate(_brute_force, batch, q, vectors)
                faiss_rate = _rate(raw.search, batch, q, 5)
                gallery_rate = _rate(gallery.index.search, batch, q, 5)
                rows.append({"size": size, "batch": batch, "numpy": numpy_rate, "faiss": faiss_rate,
                             "gallery": gallery_rate, "enroll_per_second": enroll_rate,
                             "bytes_per_identity": gallery.stats()["bytes_per_identity"]})
                print(f"{size:>9} {batch:>6} {numpy_rate:>18.1f} {faiss_rate:>16.1f} {gallery_rate:>10.1f} "
                      f"{gallery_rate / numpy_rate:>14.2f} {gallery_rate / faiss_rate:>14.2f}", flush=True)
            full = gallery.identify_many(list(queries[:32]), k=5)
            assert all(r.candidates for r in full)
            print(f"{size:>9} enrolment {enroll_rate:,.0f} templates/s; {gallery.stats()['bytes_per_identity']:,.0f} "
                  f"bytes on disk per identity (one template each)", flush=True)
            if size == approximate_at:
                # probes of enrolled people: an enrolled vector plus noise (cosine ~0.8 to it), as a
                # second photo would be; on pure noise every neighbour is a near-tie and recall means nothing
                targets = rng.integers(0, size, len(queries))
                probes = vectors[targets] + rng.standard_normal((len(queries), DIM), dtype=np.float32) * 0.03
                probes = l2_normalize(probes, axis=1)
                exact_top = raw.search(probes, 1)[1][:, 0]
                lists = 1024 if size >= 40_000 else max(4, int(np.sqrt(size)))
                for template in factories:
                    factory = template.format(lists=lists)
                    parameters = {"efSearch": 64} if factory.startswith("HNSW") else {"nprobe": 16}
                    started = time.perf_counter()
                    approximate, _ = build_gallery(Path(scratch) / factory.replace(",", "_"), vectors, factory,
                                                   parameters)
                    built = time.perf_counter() - started
                    ids = approximate.index.search(probes, 1)[1][:, 0]
                    recall = float(np.mean(ids - 1 == exact_top))  # template ids are 1-based insertion order
                    rate = _rate(approximate.index.search, 1, queries[:1], 5)
                    rows.append({"size": size, "factory": factory, "recall_at_1": recall, "batch1_qps": rate,
                                 "build_seconds": built})
                    print(f"{size:>9} {factory:<14} recall@1 vs exact {recall:.3f}, batch-1 {rate:,.0f} q/s, "
                          f"built in {built:.0f} s", flush=True)
                    approximate.close()
                milvus_row = benchmark_milvus(Path(scratch) / "milvus", vectors, queries, probes, exact_top)
                if milvus_row:
                    rows.append(milvus_row)
            gallery.close()
    return rows


def run_write_benchmark(sizes=(10_000, 100_000, 1_000_000), runs: int = 9) -> list[dict]:
    """Median single-identity enroll and remove (one template) in a Flat gallery of each size, the ratio to
    the smallest size, bytes on disk per template and the write-ahead log after the bulk enrolment."""
    rng = np.random.default_rng(1)
    rows = []
    print(f"faceid bench gallery writes  ({DIM}-d, one template per identity; medians of {runs} runs)")
    print(f"{'N':>9} {'enroll ms':>10} {'remove ms':>10} {'bytes/template':>15} {'WAL MB':>8} {'bulk /s':>9}")
    for size in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            gallery, enroll_rate = build_gallery(Path(scratch) / "g", _unit(rng, size))
            gallery.snapshot()  # the state a long-running gallery is in: no background snapshot under way
            wal = gallery.stats()["wal_bytes"]
            extra = _unit(rng, runs)
            enroll, remove = [], []
            for i, vector in enumerate(extra):
                started = time.perf_counter()
                gallery.enroll(f"extra{i}", [vector])
                enroll.append(time.perf_counter() - started)
            for i in range(runs):
                started = time.perf_counter()
                gallery.remove(f"extra{i}")
                remove.append(time.perf_counter() - started)
            stats = gallery.stats()
            gallery.close()
        row = {"size": size, "enroll_median_s": float(np.median(enroll)), "remove_median_s": float(np.median(remove)),
               "bytes_per_template": stats["bytes_per_template"], "wal_bytes_after_bulk": wal,
               "bulk_enroll_per_second": enroll_rate}
        rows.append(row)
        print(f"{size:>9} {1e3 * row['enroll_median_s']:>10.2f} {1e3 * row['remove_median_s']:>10.2f} "
              f"{row['bytes_per_template']:>15,.0f} {wal / 2**20:>8.1f} {enroll_rate:>9,.0f}", flush=True)
    first, last = rows[0], rows[-1]
    print(f"ratio {last['size']}/{first['size']}: enroll {last['enroll_median_s'] / first['enroll_median_s']:.2f}x, "
          f"remove {last['remove_median_s'] / first['remove_median_s']:.2f}x", flush=True)
    return rows


def benchmark_milvus(folder: Path, vectors, queries, probes, exact_top) -> dict | None:
    """The Milvus Lite backend on the same vectors: enrolment rate, q/s at batch 1 and 256, recall."""
    try:
        import milvus_lite  # noqa: F401
    except ImportError:
        print("milvus-lite is not installed: Milvus Lite figures skipped")
        return None
    gallery, enroll_rate = build_gallery(folder, vectors, chunk=50_000, backend="milvus")
    batch1 = _rate(gallery.index.search, 1, queries[:1], 5)
    batch256 = _rate(gallery.index.search, len(queries), queries, 5)
    ids = gallery.index.search(probes, 1)[1][:, 0]
    recall = float(np.mean(ids - 1 == exact_top))
    gallery.close()
    print(f"{len(vectors):>9} Milvus Lite (FLAT) enrolment {enroll_rate:,.0f} templates/s, batch-1 {batch1:,.1f} q/s, "
          f"batch-256 {batch256:,.1f} q/s, recall@1 vs exact {recall:.3f}", flush=True)
    return {"size": len(vectors), "backend": "milvus-lite", "enroll_per_second": enroll_rate, "batch1_qps": batch1,
            "batch256_qps": batch256, "recall_at_1": recall}


def clustered_templates(rng, size: int, latent: int | None = LATENT_DIM, per_identity: int = 5) -> np.ndarray:
    """`size` unit templates: `per_identity` per identity, each its identity's centre plus isotropic noise (cos ~0.75
    to the centre); centres are random in a `latent`-dim subspace of the 512 (None: in all 512, a harder case
    for any partition than real embeddings, whose intrinsic dimension is far below 512)."""
    count = -(-size // per_identity)
    if latent:
        basis = np.linalg.qr(rng.standard_normal((DIM, latent), dtype=np.float32))[0].T
        centres = l2_normalize(rng.standard_normal((count, latent), dtype=np.float32) @ basis, axis=1)
    else:
        centres = _unit(rng, count)
    templates = np.repeat(centres, per_identity, axis=0)[:size]
    templates += rng.standard_normal(templates.shape, dtype=np.float32) * np.float32(0.04)
    return l2_normalize(templates, axis=1)


def _bytes_per_template(index: VectorIndex, folder: Path) -> float:
    """The index's size serialised (vectors, ids, centroids, graph), per template: what it holds in memory."""
    path = folder / "index.faiss"
    index.save(path)
    return path.stat().st_size / max(1, len(index))


def run_search_benchmark(sizes=(10_000, 100_000, 1_000_000), latent: int | None = LATENT_DIM) -> list[dict]:
    """Search-side rows (about 6 minutes on 2 cores for the default sizes; `--quick` runs 10k and 100k)."""
    rng, rows = np.random.default_rng(0), []
    print(f"faceid bench gallery-search  (512-d clustered templates, {latent or DIM}-d identity space; queries/s of "
          f"top-5 search; probes at cos {tuning.QUERY_COSINE} to an enrolled template)")
    print(f"{'N':>9} {'index':>22} {'batch':>6} {'raw FAISS Flat':>15} {'gallery':>10} {'gallery/FAISS':>14}")
    for size in sizes:
        vectors = clustered_templates(rng, size, latent)
        probes = tuning.noisy_queries(vectors, 1_000, seed=1)  # not the tuner's queries (seed 0)
        with tuning.blas_from(1):
            best = faiss.knn(probes, vectors, 1, metric=faiss.METRIC_INNER_PRODUCT)[0][:, 0]
        raw = faiss.IndexFlatIP(DIM)
        raw.add(vectors)
        raw_rates = {batch: _rate(raw.search, batch, probes[:batch], 5) for batch in SEARCH_BATCHES}
        del raw
        for factory in ("Flat", tuning.AUTO):
            index = VectorIndex(DIM, factory)
            started = time.perf_counter()
            index.build(np.arange(1, size + 1), vectors)
            built = time.perf_counter() - started
            record = index.tuning or {}
            recall = float(np.mean(index.search(probes, 1)[0][:, 0] >= best - 1e-5))
            with tempfile.TemporaryDirectory() as scratch:
                memory = _bytes_per_template(index, Path(scratch))
            tuned = f" {record['parameter']}={record['value']}" if record.get("parameter") else ""
            name = index.built_factory + tuned
            for batch in SEARCH_BATCHES:
                rate = _rate(index.search, batch, probes[:batch], 5)
                rows.append({"size": size, "index": factory, "built": name, "batch": batch, "faiss": raw_rates[batch],
                             "gallery": rate, "recall_at_1": recall, "build_seconds": built,
                             "tuning_seconds": record.get("seconds", 0.0), "bytes_per_template": memory})
                print(f"{size:>9} {name:>22} {batch:>6} {raw_rates[batch]:>15.1f} {rate:>10.1f} "
                      f"{rate / raw_rates[batch]:>14.2f}", flush=True)
            print(f"{size:>9} {factory}: {name}, recall@1 vs exact {recall:.3f} on {len(probes)} fresh probes "
                  f"(tuner: {record.get('recall_at_1', 1.0):.3f} on {record.get('queries', 0)}), build + tuning "
                  f"{built:.1f} s (tuning {record.get('seconds', 0.0):.1f} s), {memory:,.0f} bytes per template",
                  flush=True)
            del index
    return rows
