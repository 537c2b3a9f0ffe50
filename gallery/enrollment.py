"""Bulk operations on a gallery: enrolling image lists and identity-folder trees (decoded, detected
and embedded in batches by `gallery.samples.pipeline`, optionally with parallel workers; bad images are
reported and skipped, never fatal) and calibrating the threshold from a folder of identities."""

from pathlib import Path

import numpy as np

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
    stream = resolve_paths(gallery.resolver, [path for _, path in labelled], workers, "enroll", progress)
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


def calibrate_from_folder(gallery: Gallery, root: Path, pairs_file: Path | None = None,
                          target_far: float = 1e-3) -> dict:
    """Embed a pair protocol with the gallery's own preprocessing and embedder, then calibrate."""
    from faceid.data import protocols

    if pairs_file is not None:
        reader = protocols.read_csv_pairs if pairs_file.suffix.lower() == ".csv" else protocols.read_lfw_pairs
        protocol = reader(pairs_file, root, skip_missing=True)
    else:
        protocol = protocols.build_pair_protocol(list_identity_folder(root), folds=10, pairs_per_fold=2000)
    failures: dict = {}
    embeddings = {}
    for path, outcome in resolve_paths(gallery.resolver, protocol.paths, desc="calibration images"):
        if isinstance(outcome, GalleryError):
            failures[str(path)] = str(outcome)
        else:
            embeddings[path] = outcome.embedding
    keep = [i for i, (a, b) in enumerate(zip(protocol.first, protocol.second, strict=True))
            if protocol.paths[a] in embeddings and protocol.paths[b] in embeddings]
    scores = np.array([float(embeddings[protocol.paths[protocol.first[i]]]
                             @ embeddings[protocol.paths[protocol.second[i]]]) for i in keep])
    result = gallery.calibrate(scores, protocol.is_same[keep], target_far, description=str(root))
    return {**result, "images_failed": len(failures)}
