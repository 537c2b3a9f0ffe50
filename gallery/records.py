"""The gallery's vocabulary: `GalleryError` (and `NotEnrolled`), and the records it takes and gives back (`Sample` in,
`Decision` from verification, `IdentifyResult` from identification)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class GalleryError(ValueError):
    """Bad input or an incompatible gallery; the message names the input and what is wrong."""


class NotEnrolled(GalleryError):
    """The named identity is not in the gallery (the service answers 404)."""


@dataclass(frozen=True)
class Sample:
    """One enrollment sample or probe, resolved to a unit embedding."""

    embedding: np.ndarray
    source: str | None = None
    file_hash: str | None = None
    quality: float | None = None  # the detector's score of a photo's face
    face: dict | None = None  # a photo's face: box, detector score, quality measures, ambiguity (resolver.face_summary)


@dataclass(frozen=True)
class Decision:
    """1:1: the probe's score against one identity and, with a threshold, whether it is accepted."""

    identity: str
    score: float
    threshold: float | None
    accepted: bool | None
    threshold_source: dict = field(default_factory=dict)
    probe: dict | None = None  # the probe photo's face (box, detector score, quality, ambiguity)

    def to_dict(self) -> dict:
        return {"identity": self.identity, "score": self.score, "threshold": self.threshold,
                "accepted": self.accepted, "threshold_source": self.threshold_source, "probe": self.probe}


@dataclass(frozen=True)
class IdentifyResult:
    """Top-k candidates; `identity` is the best candidate, or `unknown` when it scores below the threshold.
    `complete` is False when the index's result cap (Milvus: 16,384 a search) left fewer than k candidates though
    the gallery has more identities: those listed are still the best ones, in order (`identity` is right)."""

    identity: str
    candidates: list[tuple[str, float]]
    threshold: float | None
    threshold_source: dict = field(default_factory=dict)
    complete: bool = True
    probe: dict | None = None  # the probe photo's face: a client tells "unknown" from "bad photo" by its quality

    def to_dict(self) -> dict:
        """JSON-ready, with the candidate schema the CLI and HTTP share: [{identity, score}]."""
        return {"identity": self.identity, "candidates": candidate_dicts(self.candidates),
                "threshold": self.threshold, "threshold_source": self.threshold_source, "complete": self.complete,
                "probe": self.probe}


def candidate_dicts(candidates: list[tuple[str, float]]) -> list[dict]:
    """The one candidate schema of every output: [{"identity": name, "score": cosine}], best first."""
    return [{"identity": name, "score": float(score)} for name, score in candidates]
