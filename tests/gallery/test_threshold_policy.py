"""The threshold policy, case by case: a client may never bypass the calibrated threshold."""

import math

import pytest

from faceid.gallery.records import GalleryError
from faceid.gallery.threshold_policy import NoThreshold, check_threshold, decide_threshold

CALIBRATED = {"threshold": 0.4, "target_far": 1e-3}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -5, 1.5, -1.0001, "nan", "abc", None,
                                   True, [0.5]])
def test_invalid_thresholds_are_refused(value):
    with pytest.raises(GalleryError, match="threshold must be"):
        check_threshold(value)


@pytest.mark.parametrize("value", [-1, -0.3, 0, 0.5, 1, "0.25"])
def test_valid_thresholds_pass(value):
    assert check_threshold(value) == float(value)


def test_no_request_uses_the_calibrated_threshold_under_every_policy():
    for policy in ("none", "stricter", "any"):
        value, source = decide_threshold(None, CALIBRATED, policy)
        assert value == 0.4 and source == {"target_far": 1e-3}
    with pytest.raises(NoThreshold, match="gallery calibrate"):
        decide_threshold(None, None)
    assert decide_threshold(None, None, closed_set=True) == (None, {"source": "closed set"})


def test_stricter_lets_a_client_raise_but_never_lower():
    assert decide_threshold(0.6, CALIBRATED, "stricter")[0] == 0.6
    assert decide_threshold(0.4, CALIBRATED, "stricter")[0] == 0.4
    for lower in (0.39, 0, -0.5, -1):
        with pytest.raises(GalleryError, match="may only raise"):
            decide_threshold(lower, CALIBRATED, "stricter")
    assert decide_threshold(-0.5, None, "stricter")[0] == -0.5  # nothing calibrated: nothing to lower


def test_none_refuses_any_requested_threshold_and_any_takes_valid_ones():
    with pytest.raises(GalleryError, match="override: none"):
        decide_threshold(0.9, CALIBRATED, "none")
    assert decide_threshold(-0.2, CALIBRATED, "any")[0] == -0.2
    with pytest.raises(GalleryError, match="finite"):
        decide_threshold(math.nan, CALIBRATED, "any")
    with pytest.raises(GalleryError, match="policy must be one of"):
        decide_threshold(0.5, CALIBRATED, "lenient")
