"""Which decision threshold a request gets: the calibrated one, or the caller's, under a policy.

A requested threshold must be a finite number in [-1, 1] (scores are cosines). The policy decides
whether a caller may move the calibrated threshold at all:
- `none`: never; a request that names a threshold is refused;
- `stricter` (the default): only upwards; a client may demand more similarity, never accept less;
- `any`: any valid threshold (for offline analysis, not for a service facing clients).
With no calibrated threshold there is nothing to lower, and `stricter` takes any valid request.

The stored threshold is `{"threshold": t, "source": ...}`: `model default` (the zoo model's, set when the gallery is
created), `calibrate` (measured on the operator's people) or `set by hand`. A gallery with none refuses a decision
unless the request names a threshold, or asks for the closed-set answer (the best candidate, whoever it is).
"""

import math

from faceid.gallery.records import GalleryError

OVERRIDE_POLICIES = ("none", "stricter", "any")
DEFAULT_POLICY = "stricter"
CLOSED_SET = {"source": "closed set"}
DEFAULT_TARGET_FAR = 1e-3


class NoThreshold(GalleryError):
    """The gallery has no threshold and the request neither names one nor asks for the closed-set answer."""


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


def decide_threshold(requested, calibrated: dict | None, policy: str = DEFAULT_POLICY, closed_set: bool = False,
                     gallery: str = "GALLERY") -> tuple[float | None, dict]:
    """(threshold, where it came from) for a request. `calibrated` is the gallery's stored
    {"threshold": t, ...source} or None; `requested` is the caller's value or None; `closed_set` asks for the best
    candidate with no threshold at all."""
    check_policy(policy)
    if closed_set:
        if requested is not None:
            raise GalleryError("a closed-set request takes no threshold: give one or the other")
        return None, dict(CLOSED_SET)
    if requested is None:
        if calibrated is None:
            raise NoThreshold(f"{gallery} has no decision threshold (its model has no default), so it cannot tell a "
                              f"stranger from an enrolled person. Calibrate one with `faceid gallery calibrate "
                              f"{gallery} --data DIR`, give a threshold (--threshold T), or ask for the best match "
                              "whoever it is (--closed-set)")
        return calibrated["threshold"], {k: v for k, v in calibrated.items() if k != "threshold"}
    value = check_threshold(requested)
    if policy == "none":
        raise GalleryError("this gallery does not take a threshold from the request (threshold override: none); "
                           "leave it out to use the calibrated one")
    if policy == "stricter" and calibrated is not None and value < calibrated["threshold"]:
        raise GalleryError(f"threshold {value} is below the gallery's {calibrated['threshold']:.4f} "
                           f"({describe_source(calibrated)}); a request may only raise it (threshold override: "
                           "stricter). Whoever opens the gallery may allow any threshold with --threshold-override any")
    return value, {"source": "request", "policy": policy}


def threshold_in_force(stored: dict | None) -> dict:
    """What `stats` and `/health` say of a gallery's stored threshold: its value, source and their description."""
    if not stored:
        return {"threshold": None, "threshold_source": {"source": "none"},
                "threshold_description": "none: identification needs --threshold, --closed-set or a calibration"}
    source = {key: value for key, value in stored.items() if key != "threshold"}
    return {"threshold": stored["threshold"], "threshold_source": source,
            "threshold_description": describe_source(source)}


def describe_source(source: dict) -> str:
    """Where a threshold came from, in words: for tables, `stats` and `/health`."""
    kind = source.get("source")
    if kind == "model default":
        return f"default of model {source.get('model')}"
    if kind == "calibrate":
        people = source.get("people")
        on = f"{people} people" if people else f"{source.get('pairs')} pairs"
        return f"calibrated on {on} at FAR {source.get('target_far'):g}"
    return {"set by hand": "set by hand", "request": "given with the request",
            "closed set": "closed set: no threshold"}.get(kind, str(kind))


def check_target_far(target_far) -> float:
    if isinstance(target_far, bool) or not isinstance(target_far, (int, float)) or not 0 < target_far < 1:
        raise GalleryError(f"target FAR must be a number between 0 and 1 (e.g. 0.001), got {target_far!r}")
    return float(target_far)


def smallest_far(impostor_pairs: int) -> float | None:
    """The smallest FAR that `impostor_pairs` can measure: one false accept in all of them."""
    return 1.0 / impostor_pairs if impostor_pairs else None


def check_far_measurable(impostor_pairs: int, target_far: float, what: str) -> None:
    """Refuse a target FAR that fewer than 1/FAR impostor pairs cannot measure, offering the one they can."""
    needed = int(math.ceil(1 / target_far - 1e-9))
    if impostor_pairs >= needed:
        return
    offer = smallest_far(impostor_pairs)
    fix = (f"Use --target-far {_round_up(offer)} (the smallest these pairs measure) or add people"
           if offer else "Add at least two people")
    raise GalleryError(f"{what} gives {impostor_pairs} impostor pairs, which cannot measure FAR {target_far:g}: "
                       f"that needs at least {needed}. {fix}")


def _round_up(far: float) -> str:
    """`far` rounded up to two significant digits, so the offered target is measurable."""
    exponent = math.floor(math.log10(far))
    return f"{math.ceil(far / 10 ** exponent * 10) / 10:g}e{exponent}"
