"""Index tuning: `index="auto"` picks exact or IVF by size, tunes nprobe to recall@1 0.99, keeps the choice;
mid-size batches search exactly. FAISS only: this is the FAISS tuner (with Milvus, auto means AUTOINDEX:
test_milvus.py)."""

import faiss
import numpy as np
import pytest

from faceid.arrays import l2_normalize
from faceid.gallery.gallery import Gallery
from faceid.gallery.index import tuning
from faceid.gallery.index.faiss_index import VectorIndex


def _clustered(identities: int, per_identity: int, dim: int, seed: int = 0) -> np.ndarray:
    """Identities as random unit centres, each template the centre plus noise (cos ~0.75 to it)."""
    rng = np.random.default_rng(seed)
    centres = l2_normalize(rng.standard_normal((identities, dim), dtype=np.float32), axis=1)
    noise = rng.standard_normal((identities * per_identity, dim), dtype=np.float32) * np.float32(0.9 / np.sqrt(dim))
    return l2_normalize(np.repeat(centres, per_identity, axis=0) + noise, axis=1)


def _exact_best(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return (queries @ vectors.T).max(axis=1)


@pytest.fixture(scope="module")
def tuned():
    """20k x 64-d clustered vectors in an `auto` index above a small exact threshold: IVF, tuned."""
    vectors = _clustered(4_000, 5, 64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tuning, "EXACT_MAX_FLOATS", 1_000 * 64)
        index = VectorIndex(64, tuning.AUTO)
        index.build(np.arange(len(vectors)) + 1, vectors)
    return index, vectors


def test_auto_tuning_reaches_its_recall_target_on_fresh_noisy_queries(tuned):
    index, vectors = tuned
    record = index.tuning
    assert record["factory"] == index.built_factory == "IVF256,PQ32x4fs,RFlat"
    assert record["parameter"] == "nprobe" and record["recall_at_1"] >= tuning.TARGET_RECALL
    assert record["k_factor"] in tuning.K_FACTORS and index.k_factor == record["k_factor"]
    assert 1 <= record["value"] < 256  # pruning pays: not the exhaustive nprobe
    assert faiss.extract_index_ivf(index.index).nprobe == record["value"]
    fresh = tuning.noisy_queries(vectors, 2_000, seed=7)  # other vectors, other noise than the tuner's
    found, ids = index.search(fresh, 5)
    assert np.mean(found[:, 0] >= _exact_best(fresh, vectors) - 1e-5) >= tuning.TARGET_RECALL
    exact = np.sum(fresh[:, None, :] * vectors[ids - 1], axis=2)  # the returned scores are the exact ones
    assert np.allclose(found, exact, atol=1e-5) and np.all(np.diff(found, axis=1) <= 0)
    cosines = np.sum(fresh * vectors[index.search(fresh, 1)[1][:, 0] - 1], axis=1)
    assert 0.6 < np.median(cosines) < 0.8  # the queries sit at cos ~0.7 from their template


def test_the_tuners_ground_truth_leaves_faiss_blas_threshold_as_it_was():
    threshold = faiss.cvar.distance_compute_blas_threshold
    index = VectorIndex(16, "IVF8,Flat")
    index.build(np.arange(400), _clustered(100, 4, 16))
    assert index.tuning["parameter"] == "nprobe"
    assert faiss.cvar.distance_compute_blas_threshold == threshold


def test_real_probe_embeddings_join_the_tuning_queries_and_a_wrong_shape_is_named(tuned):
    index, vectors = tuned
    real = tuning.noisy_queries(vectors, 100, cosine=0.8, seed=3)
    record = tuning.tune(faiss.extract_index_ivf(index.index), vectors, real, index.built_factory)
    assert record["real_queries"] == 100 and record["queries"] == tuning.QUERIES + 100
    with pytest.raises(ValueError, match=r"tuning queries must be \(n, 64\) embeddings, got shape \(100, 32\)"):
        tuning.tune(index.index, vectors, real[:, :32])


def test_choose_factory_is_exact_below_the_threshold_and_ivf_above():
    limit = tuning.EXACT_MAX_FLOATS // 512
    assert tuning.choose_factory(limit, 512) == "Flat"
    assert tuning.choose_factory(limit + 1, 512) == "IVF256,PQ64x4fs,RFlat"
    assert tuning.choose_factory(1_000_000, 512) == "IVF2048,PQ64x4fs,RFlat"
    assert tuning.choose_factory(1_000_000, 100) == "IVF2048,Flat"  # no 4-bit PQ split: full vectors scanned


def test_refined_ivf_removes_in_place_and_names_the_right_ids(tuned, monkeypatch):
    _, vectors = tuned
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 1_000 * 64)
    index = VectorIndex(64, tuning.AUTO)
    index.build(np.arange(len(vectors)) * 3 + 11, vectors)  # ids are not row numbers
    removed = np.arange(0, len(vectors), 7)
    assert index.remove(removed * 3 + 11) and len(index) == len(vectors) - len(removed)
    added = _clustered(50, 2, 64, seed=9)
    assert index.add(np.arange(100) + 10**9, added)
    kept = np.setdiff1d(np.arange(len(vectors)), removed)
    everything, names = np.concatenate([vectors[kept], added]), np.concatenate([kept * 3 + 11, np.arange(100) + 10**9])
    index.k_factor, faiss.extract_index_ivf(index.index).nprobe = len(vectors), 256  # exhaustive: exact
    queries = np.concatenate([vectors[kept[:300]], vectors[kept[-300:]], added, vectors[removed[:100]]])  # moved too
    scores, ids = index.search(queries, 3)
    expected = np.argsort(-(queries @ everything.T), axis=1)[:, :3]
    assert np.array_equal(ids[:, 0], names[expected[:, 0]])
    assert not np.isin(ids, removed * 3 + 11).any()
    assert np.allclose(scores, np.take_along_axis(queries @ everything.T, expected, axis=1), atol=1e-5)
    assert np.array_equal(np.sort(index.content()[0]), np.sort(names))


def test_a_refined_snapshot_whose_lists_do_not_name_its_rows_is_refused(tuned, tmp_path, monkeypatch):
    _, vectors = tuned
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 1_000 * 64)
    index = VectorIndex(64, tuning.AUTO)
    index.build(np.arange(len(vectors)) + 1, vectors)
    checksum = index.save(tmp_path / "new.faiss")
    reloaded = VectorIndex(64, tuning.AUTO)
    assert reloaded.load(tmp_path / "new.faiss", checksum) is None
    assert np.array_equal(reloaded.search(vectors[:20], 1)[1], index.search(vectors[:20], 1)[1])
    ivf = faiss.extract_index_ivf(index.index)  # the layout before: the lists held the template ids
    ivf.reset()
    ivf.add_with_ids(vectors, np.arange(len(vectors)) + 1)
    checksum = index.save(tmp_path / "old.faiss")
    assert "do not name its rows" in VectorIndex(64, tuning.AUTO).load(tmp_path / "old.faiss", checksum)


def test_auto_gallery_switches_to_ann_above_the_threshold_and_keeps_its_tuning_across_reopen(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 400 * 16)
    vectors = _clustered(300, 2, 16, seed=1)
    people = {f"p{i:03d}": list(vectors[2 * i:2 * i + 2]) for i in range(300)}
    gallery = Gallery.create(tmp_path / "g", fingerprint={"fingerprint": "t", "embedding_dim": 16},
                             index_factory="auto")
    gallery.enroll_many(dict(list(people.items())[:150]))  # 300 templates: exact
    assert gallery.index.exact and gallery.stats()["index"]["tuning"]["factory"] == "Flat"
    assert gallery.stats()["index"]["tuning"]["parameter"] is None
    gallery.enroll_many(dict(list(people.items())[150:]))  # 600 templates: past the threshold, rebuilt as IVF
    record = gallery.stats()["index"]["tuning"]
    assert not gallery.index.exact and record["factory"] == "IVF64,PQ8x4fs,RFlat" and record["size"] == 600
    assert record["parameter"] == "nprobe" and record["recall_at_1"] >= tuning.TARGET_RECALL
    assert record["queries"] == min(tuning.QUERIES, 600) and record["ms_per_query"] > 0
    assert gallery.stats()["index_factory"] == "auto"
    gallery.remove("p000")  # IVF removes in place: no rebuild, the tuning stays
    assert gallery.stats()["index"]["tuning"] == record
    before = gallery.index.search(vectors[:50], 3)
    gallery.close()
    reopened = Gallery(tmp_path / "g")
    assert reopened.stats()["index"]["tuning"] == record
    assert faiss.extract_index_ivf(reopened.index.index).nprobe == record["value"]
    assert reopened.index.k_factor == record["k_factor"] and reopened.index.built_factory == record["factory"]
    after = reopened.index.search(vectors[:50], 3)
    assert np.array_equal(before[1], after[1]) and np.allclose(before[0], after[0])
    assert reopened.identify(vectors[10], k=1, closed_set=True).candidates[0][0] == "p005"
    assert "p000" not in {name for name, *_ in reopened.identify(vectors[0], k=3, closed_set=True).candidates}
    reopened.close()


def test_explicit_search_parameters_are_not_tuned(tmp_path):
    vectors = _clustered(100, 4, 16)
    index = VectorIndex(16, "IVF8,Flat", {"nprobe": 3})
    index.build(np.arange(400), vectors)
    assert index.tuning is None and faiss.extract_index_ivf(index.index).nprobe == 3
    untuned = VectorIndex(16, "IVF8,Flat")
    untuned.build(np.arange(400), vectors)
    assert untuned.tuning["parameter"] == "nprobe"


@pytest.mark.parametrize("batch", [0, 1, 7, 8, 16, 64, 127, 128, 256])
def test_mid_size_batches_return_the_exact_results(batch, monkeypatch):
    monkeypatch.setattr("faceid.gallery.index.faiss_index.SCORE_BLOCK", 3_000 * 50)  # 50-query blocks: 127 spans three
    vectors = _clustered(1_000, 3, 64, seed=2)
    index = VectorIndex(64)
    index.build(np.arange(len(vectors)) + 100, vectors)
    queries = tuning.noisy_queries(vectors, batch, seed=5) if batch else np.zeros((0, 64), np.float32)
    scores, ids = index.search(queries, 5)
    assert scores.shape == ids.shape == (batch, 5)
    expected = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    assert np.array_equal(ids, expected + 100)
    assert np.allclose(scores, np.take_along_axis(queries @ vectors.T, expected, axis=1), atol=1e-5)


def test_real_probes_that_self_queries_underrate_raise_nprobe_until_they_reach_the_target(tuned):
    """Probes further from their template (cos ~0.45, as across pose or age) than the tuner's own (cos 0.7) miss
    at the self-queries' nprobe; tuned with half of them, the other half reaches the target too."""
    index, vectors = tuned
    ivf = faiss.extract_index_ivf(index.index)
    hard = tuning.noisy_queries(vectors, 1_200, cosine=0.45, seed=11)
    tuning_half, held_out = hard[0::2], hard[1::2]

    def recall(queries):
        return np.mean(index.search(queries, 1)[0][:, 0] >= _exact_best(queries, vectors) - 1e-5)

    assert recall(held_out) < tuning.TARGET_RECALL  # self-query tuning alone is not enough for these probes
    record = index.retune(vectors, tuning_half)
    assert record["real_queries"] == len(tuning_half) and record["real_recall_at_1"] >= tuning.TARGET_RECALL
    assert record["recall_at_1"] >= tuning.TARGET_RECALL and ivf.nprobe == record["value"] > 1
    assert recall(held_out) >= tuning.TARGET_RECALL - 0.01  # fresh probes of the same kind: within sampling noise


def test_gallery_tune_takes_probe_images_or_embeddings_and_names_what_is_wrong(small_synthetic, tmp_path, capsys):
    import json
    import shutil

    from faceid.checkpoint import save_backbone_checkpoint
    from faceid.cli import main
    from faceid.torch_embedder import TorchEmbedder

    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    aligned = small_synthetic / "aligned"
    for name, index in (("ivf", "IVF4,Flat"), ("exact", "Flat")):
        assert main(["enroll", "--json", str(tmp_path / name), "--model", str(tmp_path / "model.pt"), "--aligned",
                     "--index", index, "--from-folder", str(aligned)]) == 0
    probes = tmp_path / "probes"
    shutil.copytree(aligned / "id_00001", probes / "id_00001")
    (probes / "broken.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["gallery", "tune", "--json", str(tmp_path / "ivf"), "--probes", str(probes)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["probes"] == 4 and result["skipped"] == 1 and "broken.png" in next(iter(result["skipped_images"]))
    assert result["tuning"]["real_queries"] == 4 and result["tuning"]["parameter"] == "nprobe"
    assert main(["gallery", "stats", "--json", str(tmp_path / "ivf")]) == 0
    assert json.loads(capsys.readouterr().out)["index"]["tuning"]["real_queries"] == 4  # stored, shown on reopen
    assert main(["gallery", "tune", "--json", str(tmp_path / "exact"), "--probes", str(probes)]) == 2
    assert "the index is exact (Flat); nothing to tune" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.ones((3, 32), np.float32))
    assert main(["gallery", "tune", "--json", str(tmp_path / "ivf"), "--probes", str(tmp_path / "wrong.npy")]) == 2
    assert "wrong.npy: probe embeddings have shape (3, 32), the gallery holds 16-d vectors" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "broken.png").write_bytes(b"not an image")
    assert main(["gallery", "tune", "--json", str(tmp_path / "ivf"), "--probes", str(tmp_path / "empty")]) == 2
    assert "no face found in any of its 1 images" in capsys.readouterr().err


def _auto_gallery(path, monkeypatch) -> tuple[Gallery, np.ndarray]:
    """600 clustered 16-d templates in an `auto` gallery past a small exact threshold: IVF64, tuned."""
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 400 * 16)
    vectors = _clustered(300, 2, 16, seed=1)
    gallery = Gallery.create(path, fingerprint={"fingerprint": "t", "embedding_dim": 16}, index_factory="auto")
    gallery.enroll_many({f"p{i:03d}": list(vectors[2 * i:2 * i + 2]) for i in range(300)})
    return gallery, vectors


def _hard_probes(vectors, path, count=200) -> str:
    """Probes further from their templates (cos ~0.45) than the tuner's own, as a `faceid embed`-like .npy."""
    np.save(path, tuning.noisy_queries(vectors, count, cosine=0.45, seed=11))
    return path


STALE_SERVER = """
import json, sys, faiss, numpy as np
from faceid.gallery.index import tuning
from faceid.gallery.gallery import Gallery
tuning.EXACT_MAX_FLOATS = 400 * 16
g = Gallery(sys.argv[1])
print(json.dumps(g.stats()["index"]["tuning"]), flush=True)
sys.stdin.readline()  # `gallery tune` ran in the test's process
g.identify(np.ones(16, np.float32), k=1, closed_set=True)  # the next query replays the change log
nprobe = faiss.extract_index_ivf(g.index.index).nprobe
print(json.dumps({"tuning": g.stats()["index"]["tuning"], "nprobe": nprobe}), flush=True)
g.close()
"""


def test_a_process_opened_before_gallery_tune_takes_the_new_record_and_never_writes_its_old_one_back(
        tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    from faceid.gallery.index.probe_tuning import tune_with_probes
    from tests.waiting import read_until, wait_for_exit

    tuner, vectors = _auto_gallery(tmp_path / "g", monkeypatch)
    serving = Gallery(tmp_path / "g")  # e.g. `faceid serve`, opened before the tune
    server = subprocess.Popen([sys.executable, "-c", STALE_SERVER, str(tmp_path / "g")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    old = serving.stats()["index"]["tuning"]
    assert json.loads(read_until(server, "^{", what="the other process's tuning record").string) == old
    new = tune_with_probes(tuner, _hard_probes(vectors, tmp_path / "probes.npy"))["tuning"]
    assert new["real_queries"] == 200 and new["real_recall_at_1"] >= tuning.TARGET_RECALL
    serving.identify(vectors[0], k=1, closed_set=True)  # its next query replays the change log: the new parameters
    assert serving.stats()["index"]["tuning"] == new
    assert faiss.extract_index_ivf(serving.index.index).nprobe == new["value"]
    assert serving.index.k_factor == new["k_factor"]
    server.stdin.write("tuned\n")
    server.stdin.flush()
    applied = json.loads(read_until(server, "^{", what="the other process's tuning after the tune").string)
    assert applied == {"tuning": new, "nprobe": new["value"]}  # another process too
    _, err = wait_for_exit(server)
    assert server.returncode == 0, err
    serving.enroll("late", [vectors[0]])
    serving.snapshot()  # a snapshot by the process that was opened before keeps the newer record
    assert serving.setting(tuning.SETTING) == new and new["version"] > old["version"]
    with serving.writing() as write:  # an older record is never written over a newer one
        tuning.save_record(write, old)
    assert serving.setting(tuning.SETTING) == new
    serving.close()
    tuner.close()
    reopened = Gallery(tmp_path / "g")
    assert reopened.stats()["index"]["tuning"] == new
    reopened.close()


def test_a_rebuild_tunes_again_with_the_stored_probes(tmp_path, monkeypatch):
    from faceid.gallery.index.probe_tuning import tune_with_probes

    gallery, vectors = _auto_gallery(tmp_path / "g", monkeypatch)
    tune_with_probes(gallery, _hard_probes(vectors, tmp_path / "probes.npy"))
    assert gallery.stats()["index"]["stored_probes"] == 200
    more = _clustered(800, 2, 16, seed=2)  # 2,200 templates: past the next size band, rebuilt as IVF128
    gallery.enroll_many({f"q{i:03d}": list(more[2 * i:2 * i + 2]) for i in range(800)})
    record = gallery.stats()["index"]["tuning"]
    assert record["factory"] == "IVF128,PQ8x4fs,RFlat" and record["size"] == 2_200
    assert record["real_queries"] == 200 and record["real_recall_at_1"] >= tuning.TARGET_RECALL
    assert gallery.setting(tuning.SETTING) == record
    snapshot = tmp_path / "g" / gallery.setting("snapshot")["file"]
    gallery.close()
    snapshot.unlink()  # rebuilt from SQLite on the next open
    reopened = Gallery(tmp_path / "g")
    stats = reopened.stats()["index"]
    assert "missing" in stats["rebuilt_reason"] and stats["tuning"]["real_queries"] == 200
    assert stats["tuning"]["real_recall_at_1"] >= tuning.TARGET_RECALL and stats["stored_probes"] == 200
    reopened.close()


def test_stored_probes_are_bounded_and_a_set_of_another_dimension_is_dropped_with_a_warning(
        tmp_path, monkeypatch, caplog):
    import logging

    from faceid.gallery.index import probe_tuning

    gallery, vectors = _auto_gallery(tmp_path / "g", monkeypatch)
    monkeypatch.setattr(probe_tuning, "STORED_PROBES", 50)
    result = probe_tuning.tune_with_probes(gallery, _hard_probes(vectors, tmp_path / "probes.npy", count=80))
    assert result["probes"] == 50 and result["tuning"]["real_queries"] == 50
    assert "80 probes given: a seeded sample of 50" in result["note"]
    assert gallery.stats()["index"]["stored_probes"] == 50
    with gallery.writing() as write:  # e.g. left behind by another model's embeddings
        write.set_tuning_probes(np.ones((5, 32), np.float32))
    with caplog.at_level(logging.WARNING, logger="faceid.gallery"):
        gallery.rebuild_index("a test")
    assert gallery.index.tuning["real_queries"] == 0 and gallery.index.tuning["real_recall_at_1"] is None
    assert "5 stored tuning probes are 32-d, the gallery holds 16-d vectors: not used" in caplog.text
    gallery.close()
