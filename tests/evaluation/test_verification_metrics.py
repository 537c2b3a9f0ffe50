"""Verification metrics against scikit-learn and hand-checkable cases."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from faceid.evaluation import (
    best_threshold_accuracy,
    equal_error_rate,
    kfold_accuracy,
    roc,
    roc_auc,
    tar_at_far,
    verification,
    verification_report,
)


def _scores(seed, n=400, ties=False):
    rng = np.random.default_rng(seed)
    is_same = rng.random(n) < 0.4
    scores = rng.normal(is_same * 1.2, 1.0)
    if ties:
        scores = np.round(scores, 1)
    return scores, is_same


@pytest.mark.parametrize("seed, ties", [(0, False), (1, True), (2, True)])
def test_roc_and_auc_match_sklearn(seed, ties):
    scores, is_same = _scores(seed, ties=ties)
    far, tar, thresholds = roc(scores, is_same)
    sk_far, sk_tar, sk_thresholds = roc_curve(is_same, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, sk_far)
    np.testing.assert_allclose(tar, sk_tar)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])
    assert roc_auc(scores, is_same) == pytest.approx(roc_auc_score(is_same, scores), rel=1e-12)


def test_all_same_scores_and_tiny_inputs():
    assert roc_auc([0.5, 0.5, 0.5], [True, False, True]) == pytest.approx(0.5)
    assert roc_auc([0.9, 0.1], [1, 0]) == 1.0
    assert equal_error_rate([0.9, 0.1], [1, 0]) == 0.0
    assert equal_error_rate([0.1, 0.9], [1, 0]) == 1.0
    with pytest.raises(ValueError, match="at least one genuine and one impostor"):
        roc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        roc([0.1, np.nan], [True, False])


def test_eer_against_a_naive_scan():
    scores, is_same = _scores(3, n=2000)
    thresholds = np.linspace(scores.min() - 1, scores.max() + 1, 20001)
    far = np.array([(scores[~is_same] >= t).mean() for t in thresholds])
    frr = np.array([(scores[is_same] < t).mean() for t in thresholds])
    naive = far[np.argmin(np.abs(far - frr))]
    assert equal_error_rate(scores, is_same) == pytest.approx(naive, abs=2e-3)


def test_tar_at_far_is_the_most_permissive_threshold_within_the_target():
    genuine = [0.9, 0.8, 0.7, 0.6, 0.5]
    impostor = [0.85, 0.75, 0.4, 0.3, 0.2, 0.1, 0.05, 0.04, 0.02, 0.01]  # 10 impostors
    scores = np.array(genuine + impostor)
    is_same = np.array([True] * 5 + [False] * 10)
    assert tar_at_far(scores, is_same, 0.1) == pytest.approx(0.4)  # one false accept (0.85): 0.9, 0.8 pass
    assert tar_at_far(scores, is_same, 0.15) == pytest.approx(0.4)  # still one
    # two false accepts: down to 0.75 - all genuine >= 0.5
    assert tar_at_far(scores, is_same, 0.2) == pytest.approx(1.0)
    assert np.isnan(tar_at_far(scores, is_same, 0.05))  # below 1/10: not measurable


def test_best_threshold_accuracy_naive():
    scores, is_same = _scores(4, n=300, ties=True)
    naive = max(((scores >= t) == is_same).mean() for t in np.r_[scores, scores.max() + 1])
    accuracy, threshold = best_threshold_accuracy(scores, is_same)
    assert accuracy == pytest.approx(naive)
    assert ((scores >= threshold) == is_same).mean() == pytest.approx(accuracy)


def test_kfold_accuracy_hand_checkable():
    # Two folds. Fold 0: perfectly separated at 0.5. Fold 1: separated at 0.5 too, but a genuine pair
    # at 0.45 is lost when fold 0's threshold is applied to it.
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.7, 0.45, 0.3, 0.2])
    is_same = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    mean, std, per_fold = kfold_accuracy(scores, is_same, folds=folds)
    # threshold from fold 1 (>= 0.45) classifies fold 0 perfectly;
    # from fold 0 (best: >= 0.8, first max) loses 0.7 and 0.45
    _, threshold_from_fold0 = best_threshold_accuracy(scores[:4], is_same[:4])
    expected_fold1 = ((scores[4:] >= threshold_from_fold0) == is_same[4:]).mean()
    assert per_fold == [1.0, expected_fold1]
    assert mean == pytest.approx((1.0 + expected_fold1) / 2)
    assert std == pytest.approx(abs(1.0 - expected_fold1) / 2)


def test_verification_report_keys_and_stratified_folds():
    scores, is_same = _scores(5, n=600)
    report = verification_report(scores, is_same)
    assert set(report) == {"accuracy_10fold_mean", "accuracy_10fold_std", "best_threshold", "auc", "eer",
                           "tar_at_far", "num_genuine", "num_impostor"}
    assert list(report["tar_at_far"]) == ["1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6"]
    assert np.isnan(report["tar_at_far"]["1e-3"])  # fewer than 1000 impostors
    assert 0.6 < report["accuracy_10fold_mean"] < 0.9
    assert report["num_genuine"] + report["num_impostor"] == 600


def test_too_few_pairs_for_the_folds_are_refused_by_count():
    scores, is_same = np.array([0.9, 0.8, 0.1, 0.2, 0.3]), np.array([True, True, False, False, False])
    with pytest.raises(ValueError, match="2 genuine and 3 impostor pairs are too few for 10 folds"):
        verification_report(scores, is_same)
    assert verification_report(scores, is_same, num_folds=2)["num_genuine"] == 2


def test_report_builds_the_full_data_roc_once(monkeypatch):
    rng = np.random.default_rng(3)
    is_same = rng.random(400) < 0.3
    scores = rng.normal(size=400) + is_same
    built = []
    original = verification.RocCurve.of.__func__

    def counting(cls, s, same):
        built.append(len(np.asarray(s)))
        return original(cls, s, same)

    monkeypatch.setattr(verification.RocCurve, "of", classmethod(counting))
    report = verification.verification_report(scores, is_same)
    assert built.count(400) == 1  # the other curves are the k-fold training subsets
    assert report["auc"] == verification.roc_auc(scores, is_same)
