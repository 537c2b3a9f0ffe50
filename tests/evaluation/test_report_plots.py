"""The score histogram on degenerate scores: one value only, or one class absent, draws without a NaN warning."""

import warnings

import numpy as np
import pytest

from evaluation.report import plot_score_histograms


@pytest.mark.parametrize("scores, is_same", [
    ([0.8, 0.8, 0.8, 0.8], [True, False, True, False]),  # every score equal: a zero-width range
    ([0.9, 0.7, 0.8], [False, False, False]),  # no genuine pair
])
def test_degenerate_scores_plot_cleanly(tmp_path, scores, is_same):
    path = tmp_path / "hist.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_score_histograms(np.array(scores), np.array(is_same), 0.85, path, "degenerate")
    assert path.stat().st_size > 0
