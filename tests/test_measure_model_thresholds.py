"""tools/measure_model_thresholds.py: its FAR/TAR arithmetic against scikit-learn's ROC on random scores."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_curve

SPEC = importlib.util.spec_from_file_location(
    "measure_model_thresholds", Path(__file__).resolve().parents[1] / "tools" / "measure_model_thresholds.py")
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


@pytest.mark.parametrize("target", [0.5, 0.1, 0.01, 1e-3])
def test_the_threshold_is_the_most_permissive_one_holding_the_far(target):
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.7, 0.1, 300), rng.normal(0.2, 0.1, 3000)].round(3)  # ties, as cosines have
    is_same = np.r_[np.ones(300, bool), np.zeros(3000, bool)]
    threshold = tool.threshold_at_far(scores, is_same, target)["threshold"]
    measured = tool.rates(scores, is_same, threshold)
    far, tar, _ = roc_curve(is_same, scores, drop_intermediate=False)
    best = np.flatnonzero(far <= target).max()  # sklearn's most permissive cut within the target
    assert measured["far"] <= target
    assert measured["far"] == pytest.approx(far[best]) and measured["tar"] == pytest.approx(tar[best])


def test_pairs_are_every_unordered_pair_once():
    embeddings = np.eye(4)
    scores, same = tool.pair_scores(embeddings, np.array(["a", "a", "b", "c"]))
    assert len(scores) == 6 and same.sum() == 1
