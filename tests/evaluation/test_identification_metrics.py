"""Identification metrics on a hand-built gallery/probe set and against a naive reference."""

import numpy as np
import pytest

from faceid.evaluation.identification import cmc, dir_at_fpir, identification_report, rank_k_accuracy

# Gallery: A has two samples, B and C one each.
GALLERY = np.array(["A", "A", "B", "C"])
PROBES = np.array(["A", "B", "C", "B", "X", "Y"])  # X and Y are not enrolled
SIMILARITY = np.array([
    # A1   A2   B    C
    [0.2, 0.9, 0.5, 0.1],  # A: rank 1 (0.9 via its second sample)
    [0.6, 0.3, 0.5, 0.1],  # B: rank 2 (A beats it)
    [0.1, 0.2, 0.3, 0.8],  # C: rank 1
    [0.1, 0.1, 0.2, 0.7],  # B: rank 2 behind C
    [0.4, 0.1, 0.3, 0.2],  # X: best 0.4
    [0.1, 0.1, 0.7, 0.2],  # Y: best 0.7
])


def test_rank_k_and_cmc_by_hand():
    assert rank_k_accuracy(SIMILARITY, GALLERY, PROBES, ks=(1, 2, 5)) == {"rank1": 0.5, "rank2": 1.0, "rank5": 1.0}
    np.testing.assert_allclose(cmc(SIMILARITY, GALLERY, PROBES), [0.5, 1.0, 1.0])


def test_dir_at_fpir_by_hand():
    # non-mated best scores: 0.7 (Y), 0.4 (X). FPIR 0.5 allows one: threshold just above 0.4.
    # rank-1 mated probes: A (0.9), C (0.8): both above 0.4 -> DIR = 2/4
    assert dir_at_fpir(SIMILARITY, GALLERY, PROBES, 0.5) == pytest.approx(0.5)
    # FPIR 1.0 accepts everything: DIR = rank-1 rate
    assert dir_at_fpir(SIMILARITY, GALLERY, PROBES, 1.0) == pytest.approx(0.5)
    # 0.1 < 1/2 non-mated probes: not measurable
    assert np.isnan(dir_at_fpir(SIMILARITY, GALLERY, PROBES, 0.1))
    similarity = SIMILARITY.copy()
    similarity[5, 2] = 0.85  # Y now scores above C's 0.8; FPIR 0.5 threshold is above 0.4 still
    assert dir_at_fpir(similarity, GALLERY, PROBES, 0.5) == pytest.approx(0.5)


def _naive_dir(similarity, gallery, probes, fpir):
    identities = sorted(set(gallery))
    scores = np.array([[max(similarity[p, j] for j in range(len(gallery)) if gallery[j] == i) for i in identities]
                       for p in range(len(probes))])
    mated = np.array([p in identities for p in probes])
    non_mated = scores[~mated].max(1)
    best_dir = 0.0
    for threshold in np.r_[np.unique(scores), np.inf]:
        if (non_mated >= threshold).mean() <= fpir:
            hits = [scores[p].max() >= threshold and identities[int(np.argmax(scores[p]))] == probes[p]
                    for p in range(len(probes)) if mated[p]]
            best_dir = max(best_dir, float(np.mean(hits)))
    return best_dir


@pytest.mark.parametrize("seed", range(4))
def test_dir_against_a_naive_threshold_scan(seed):
    rng = np.random.default_rng(seed)
    gallery = np.repeat(np.arange(8), 2)
    probes = rng.integers(0, 12, 200)  # 8..11 are not enrolled
    similarity = rng.normal(0, 1, (200, 16)) + 2.0 * (probes[:, None] == gallery[None])
    for fpir in (0.1, 0.05):
        expected = _naive_dir(similarity, gallery, probes, fpir)
        assert dir_at_fpir(similarity, gallery, probes, fpir) == pytest.approx(expected)


def test_report_counts_and_fnir():
    report = identification_report(SIMILARITY, GALLERY, PROBES)
    assert report["num_gallery_identities"] == 3
    assert report["num_mated_probes"] == 4 and report["num_non_mated_probes"] == 2
    assert report["fnir_at_fpir"]["1e-1"] != report["fnir_at_fpir"]["1e-1"]  # NaN: only 2 non-mated probes


def test_shape_errors():
    with pytest.raises(ValueError, match="to match the gallery"):
        cmc(SIMILARITY[:, :3], GALLERY, PROBES)
