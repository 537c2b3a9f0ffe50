"""Bulk enrolment: image lists and identity-folder trees, decoded, detected and embedded in batches by
`gallery.samples.pipeline`, optionally with parallel workers; bad images (and photos the gallery's
`enrolment_check` refuses) are reported and skipped, never fatal.
(Calibrating the threshold from a folder of people: `gallery.calibration`.)"""

from pathlib import Path

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.samples.pipeline import resolve_paths

BATCH_IDENTITIES = 64


def _summary(results: dict, failures: dict, images: int) -> dict:
    return {"images": images, "identities": len(results),
            "enrolled_samples": sum(r["added"] for r in results.values()),
            "duplicates": sum(len(r["duplicates"]) for r in results.values()), "failed": len(failures),
            "failures": failures}


def _commit(gallery: Gallery, pending: dict, results: dict) -> None:
    for identity, result in gallery.enroll_many(pending).items():
        merged = results.setdefault(identity, {"added": 0, "duplicates": []})
        merged["added"] += result["added"]
        merged["duplicates"] += result["duplicates"]


def _enroll(gallery: Gallery, labelled: list[tuple[str, Path]], workers: int, progress: bool) -> dict:
    """Enroll (identity, image) pairs, grouped by identity; commits every BATCH_IDENTITIES identities."""
    results: dict = {}
    failures: dict = {}
    pending: dict = {}
    stream = resolve_paths(gallery.resolver, [path for _, path in labelled], workers, "enroll", progress,
                           gallery.enrolment_check)
    for (identity, _), (path, outcome) in zip(labelled, stream, strict=True):
        if isinstance(outcome, GalleryError):
            failures[str(path)] = str(outcome)
            continue
        if identity not in pending and len(pending) >= BATCH_IDENTITIES:
            _commit(gallery, pending, results)
            pending = {}
        pending.setdefault(identity, []).append(outcome)
    if pending:
        _commit(gallery, pending, results)
    return _summary(results, failures, len(labelled))


def enroll_images(gallery: Gallery, identity: str, images: list[Path], workers: int = 1,
                  progress: bool = True) -> dict:
    """Images of one identity; `workers` processes decode and detect while this one embeds."""
    if not images:
        raise ValueError("no images to enroll")
    return _enroll(gallery, [(identity, Path(image)) for image in images], workers, progress)


def enroll_folder(gallery: Gallery, root: Path, workers: int = 1, progress: bool = True) -> dict:
    """One identity per sub-folder of `root`."""
    return _enroll(gallery, [(item.identity, item.path) for item in list_identity_folder(root)], workers, progress)
