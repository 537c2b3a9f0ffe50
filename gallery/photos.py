"""Whole photos: every face of one image identified against a gallery (`identify_photo`), for
`faceid identify --all-faces` and the HTTP service. All faces are detected, aligned and embedded in
one batch and searched with one `identify_many` call; `FaceMatch.to_dict` is JSON-ready."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from faceid.gallery.gallery import UNKNOWN, Gallery
from faceid.gallery.records import GalleryError, candidate_dicts
from faceid.gallery.samples.resolver import read_image


@dataclass(frozen=True)
class FaceMatch:
    """One face of a photo: where it is, how sure the detector was, and who it is."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in the photo's pixels
    landmarks: np.ndarray  # (5, 2) eyes, nose, mouth corners
    score: float  # detector confidence
    identity: str  # the best candidate, or "unknown" below the threshold
    candidates: list[tuple[str, float]]
    threshold: float | None
    threshold_source: dict = field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.identity != UNKNOWN

    @property
    def best_score(self) -> float | None:
        """The similarity of the nearest enrolled identity (None for an empty gallery)."""
        return self.candidates[0][1] if self.candidates else None

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box],
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
                "score": round(float(self.score), 5), "identity": self.identity,
                "candidates": candidate_dicts(self.candidates),
                "threshold": self.threshold, "threshold_source": self.threshold_source}


def identify_photo(gallery: Gallery, image, k: int = 5, threshold: float | None = None,
                   name: str | None = None, closed_set: bool = False) -> list[FaceMatch]:
    """Every face of `image` (a path, encoded bytes or an RGB array), left to right; [] when none is found.

    `threshold` defaults to the gallery's (see `Gallery.identify_many`, also for `closed_set`); `name` labels
    errors (default: the path)."""
    name = name or (str(image) if not isinstance(image, (bytes, np.ndarray)) else "photo")
    preprocessor, embedder = gallery.resolver.preprocessor, gallery.resolver.embedder
    if preprocessor is None or embedder is None:
        raise GalleryError(f"{name}: finding every face of a photo needs a gallery opened with an embedder and a "
                           "face detector (not one of aligned crops)")
    rgb = read_image(image, name, gallery.resolver.max_pixels)[0]
    gallery.decision_threshold(threshold, closed_set)  # refused before any work when there is none
    faces = sorted(preprocessor.selecting("all").many([rgb])[0], key=lambda f: (f.face.box[0], f.face.box[1]))
    if not faces:
        return []
    results = gallery.identify_many(list(embedder.embed([face.crop for face in faces])), k, threshold, closed_set)
    return [FaceMatch(face.face.box, face.face.landmarks, face.face.score, result.identity, result.candidates,
                      result.threshold, result.threshold_source)
            for face, result in zip(faces, results, strict=True)]
