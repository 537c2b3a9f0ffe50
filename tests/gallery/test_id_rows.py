"""The id -> row map behind in-place removal, against a dict kept by hand, and the exact and refined
indexes through random enrol/remove sequences against a brute-force reference."""

import numpy as np
import pytest

from faceid.arrays import l2_normalize
from faceid.gallery.index import id_rows, tuning
from faceid.gallery.index.faiss_index import VectorIndex
from faceid.gallery.index.id_rows import IdRows


def _apply_removal(ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """What the index does: the last live rows move into the freed ones, the tail is dropped."""
    keep = len(ids) - len(rows)
    holes, movers = rows[rows < keep], np.setdiff1d(np.arange(keep, len(ids)), rows)
    ids = ids.copy()
    ids[holes] = ids[movers]
    return ids[:keep]


@pytest.mark.parametrize("sparse", [False, True])
def test_the_map_follows_adds_moves_and_removals_like_a_dict(sparse, monkeypatch):
    if sparse:
        monkeypatch.setattr(id_rows, "SPARSE_SLACK", 4)
    rng = np.random.default_rng(0)
    mapping, ids, next_id = IdRows(), np.zeros(0, np.int64), 1
    for step in range(300):
        if rng.random() < 0.6 or len(ids) < 3:
            new = np.arange(next_id, next_id + int(rng.integers(1, 4)), dtype=np.int64) * (1000 if sparse else 1)
            next_id += len(new)
            mapping.added(new, len(ids))
            ids = np.concatenate([ids, new])
        else:
            wanted = rng.choice(ids, size=int(rng.integers(1, 3)), replace=False)
            absent = np.array([-5, 10**12, next_id * 1000 + 7])
            rows = mapping.find(ids, np.concatenate([wanted, absent]))
            reference = sorted({row: None for row, value in enumerate(ids) if value in set(wanted)})
            assert rows.tolist() == reference, step
            mapping.removed(ids[rows])
            moved = _apply_removal(ids, rows)
            holes = rows[rows < len(moved)]
            mapping.moved(moved[holes], holes)
            ids = moved
    assert mapping.find(ids, ids).tolist() == list(range(len(ids)))


@pytest.mark.parametrize("factory", ["Flat", "auto"])
def test_random_enrols_and_removals_keep_search_equal_to_brute_force(factory, monkeypatch):
    monkeypatch.setattr(tuning, "EXACT_MAX_FLOATS", 300 * 32)  # auto: a refined IVF from 300 vectors up
    rng = np.random.default_rng(1)
    dim, live, next_id = 32, {}, 1
    index = VectorIndex(dim, factory, search_parameters={"nprobe": 64, "k_factor": 64} if factory == "auto" else None)
    start = l2_normalize(rng.standard_normal((400, dim)).astype(np.float32), axis=1)
    index.build(np.arange(1, 401), start)
    live.update({i + 1: start[i] for i in range(400)})
    next_id = 401
    assert index.exact == (factory == "Flat")
    for _ in range(60):
        if rng.random() < 0.5:
            vectors = l2_normalize(rng.standard_normal((2, dim)).astype(np.float32), axis=1)
            assert index.add(np.array([next_id, next_id + 1]), vectors)
            live.update({next_id: vectors[0], next_id + 1: vectors[1]})
            next_id += 2
        else:
            gone = rng.choice(sorted(live), size=2, replace=False)
            assert index.remove(gone)
            for key in gone:
                del live[key]
        assert sorted(index.content()[0].tolist()) == sorted(live)
    keys = np.array(sorted(live))
    matrix = np.stack([live[k] for k in keys])
    queries = matrix[rng.choice(len(keys), 20, replace=False)]
    scores, found = index.search(queries, 3)
    expected = keys[np.argsort(-(queries @ matrix.T), axis=1)[:, :3]]
    assert np.array_equal(found, expected)
    np.testing.assert_allclose(scores, np.sort(-(queries @ matrix.T), axis=1)[:, :3] * -1, atol=1e-5)
