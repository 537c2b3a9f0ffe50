"""`faceid bench gallery` at tiny sizes: one table, every column, baselines from the same run."""

import numpy as np
import pytest

from faceid.gallery.benchmarks import data as bench_data
from faceid.gallery.benchmarks import real_faces
from faceid.gallery.benchmarks import search as benchmark
from faceid.gallery.index import tuning
from faceid.gallery.index.faiss_index import VectorIndex


@pytest.fixture
def quick(monkeypatch):
    """Short rate measurements; `auto` leaves exact search above 1,000 512-d templates (128-d: above 4,000)."""
    monkeypatch.setattr(bench_data, "MEASURE_SECONDS", 0.02)
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 1_000 * 512)


def test_the_gallery_bench_prints_one_table_with_every_column(quick, capsys):
    rows = benchmark.run_gallery_benchmark(sizes=(600, 3_000), real=False)
    assert [(r["size"], r["index"]) for r in rows] == [(600, "exact"), (600, "auto"), (3_000, "exact"),
                                                       (3_000, "auto")]
    assert rows[1]["built"] == "Flat" and rows[3]["built"].startswith("IVF128,PQ64x4fs,RFlat nprobe=")
    for row in rows:
        assert all(row[f"batch{b}"] > 0 and row[f"raw_batch{b}"] > 0 for b in benchmark.SEARCH_BATCHES)
        assert row["recall_at_1"] >= (1.0 if row["built"] == "Flat" else 0.95)
        assert row["build_seconds"] > 0 and row["index_bytes"] > (2048 if row["built"] == "Flat" else 2048 + 32)
    for row in rows[1::2]:
        assert row["enroll_median_s"] > 0 and row["remove_median_s"] > 0 and row["disk_bytes_per_template"] > 2048
        assert row["wal_bytes_after_bulk"] >= 0 and row["wal_bytes_after_writes"] >= 0
        assert row["bulk_enroll_per_second"] > 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(rows) and all(column in lines[0] for column in benchmark.COLUMNS)
    assert lines[2].count("x)") == 4 and lines[3].count("x)") == 6  # search ratios; writes too on auto rows
    assert lines[4].count(" - ") == 5  # exact rows: no real probes, no gallery writes


def test_the_auto_rows_baseline_is_raw_faiss_with_the_same_lists_and_parameters(quick):
    vectors = bench_data.clustered_templates(np.random.default_rng(0), 3_000)
    index = VectorIndex(512, tuning.AUTO)
    index.build(np.arange(len(vectors)) + 1, vectors)
    raw = benchmark._raw_like(index)[0]
    probes = tuning.noisy_queries(vectors, 300, seed=4)
    assert type(raw).__name__ == "IndexRefineFlat" and raw.k_factor == index.k_factor
    assert np.array_equal(raw.search(probes, 5)[1] + 1, index.search(probes, 5)[1])  # rows vs 1-based ids


def test_auto_tuned_with_real_faces_finds_the_exact_neighbour_of_held_out_real_probes(monkeypatch):
    reason = real_faces.unavailable()
    if reason:
        pytest.skip(f"real-probe check needs ../shared/data and dlib_resnet_v1: {reason}")
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 1_000 * 128)
    embeddings, labels = real_faces.real_embeddings()
    assert embeddings.shape[1] == 128 and len(np.unique(labels)) >= 80
    result = real_faces.real_probe_recall(20_000, embeddings, labels)
    assert result["real_index"].startswith("IVF") and result["real_probes"] > 400
    assert result["real_recall_at_1"] >= tuning.TARGET_RECALL - 0.01
