"""Which decision threshold a request gets: the calibrated one, or the caller's, under a policy.

A requested threshold must be a finite number in [-1, 1] (scores are cosines). The policy decides
whether a caller may move the calibrated threshold at all:
- `none`: never; a request that names a threshold is refused;
- `stricter` (the default): only upwards; a client may demand more similarity, never accept less;
- `any`: any valid threshold (for offline analysis, not for a service facing clients).
With no calibrated threshold there is nothing to lower, and `stricter` takes any valid request.
"""

import math

from faceid.gallery.records import GalleryError

OVERRIDE_POLICIES = ("none", "stricter", "any")
DEFAULT_POLICY = "stricter"


def check_policy(policy: str) -> str:
    if policy not in OVERRIDE_POLICIES:
        raise GalleryError(f"threshold override policy must be one of {', '.join(OVERRIDE_POLICIES)}, got {policy!r}")
    return policy


def check_threshold(value) -> float:
    """`value` as a float, or GalleryError when it is not a finite number in [-1, 1]."""
    if isinstance(value, bool):
        raise GalleryError(f"threshold must be a number in [-1, 1], got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GalleryError(f"threshold must be a number in [-1, 1], got {value!r}") from None
    if not math.isfinite(number) or not -1.0 <= number <= 1.0:
        raise GalleryError(f"threshold must be a finite number in [-1, 1] (a cosine), got {value!r}")
    return number


def decide_threshold(requested, calibrated: dict | None, policy: str = DEFAULT_POLICY) -> tuple[float | None, dict]:
    """(threshold, where it came from) for a request. `calibrated` is the gallery's stored
    {"threshold": t, ...source} or None; `requested` is the caller's value or None."""
    check_policy(policy)
    if requested is None:
        if calibrated is None:
            return None, {"source": "none: run calibrate or pass a threshold"}
        return calibrated["threshold"], {k: v for k, v in calibrated.items() if k != "threshold"}
    value = check_threshold(requested)
    if policy == "none":
        raise GalleryError("this gallery does not take a threshold from the request (threshold override: none); "
                           "leave it out to use the calibrated one")
    if policy == "stricter" and calibrated is not None and value < calibrated["threshold"]:
        raise GalleryError(f"threshold {value} is below the calibrated {calibrated['threshold']:.4f}; "
                           "a request may only raise it (threshold override: stricter)")
    return value, {"source": "request", "policy": policy}
