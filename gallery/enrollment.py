"""Bulk operations on a gallery: enrolling image lists and identity-folder trees (decoded, detected
and embedded in batches by `gallery.samples.pipeline`, optionally with parallel workers; bad images are
reported and skipped, never fatal) and calibrating the threshold from a folder of identities."""

from pathlib import Path

import numpy as np

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.samples.pipeline import resolve_paths
from faceid.gallery.threshold_policy import DEFAULT_TARGET_FAR, check_far_measurable, check_target_far

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
                          target_far: float = DEFAULT_TARGET_FAR, progress: bool = True) -> dict:
    """Calibrate the gallery's threshold on a folder of identities, embedded with the gallery's own preprocessing and
    embedder: every pair of its images (or the pairs of `pairs_file`). The pairs are counted before anything is
    embedded, and a target FAR they cannot measure is refused with the smallest one they can."""
    from faceid.data import protocols

    check_target_far(target_far)
    if pairs_file is not None:
        reader = protocols.read_csv_pairs if pairs_file.suffix.lower() == ".csv" else protocols.read_lfw_pairs
        protocol = reader(pairs_file, root, skip_missing=True)
        paths, first, second = protocol.paths, np.asarray(protocol.first), np.asarray(protocol.second)
        labels = None
        people = len({Path(p).parent.name for p in paths})
        check_far_measurable(int((~np.asarray(protocol.is_same, bool)).sum()), target_far, f"{pairs_file}")
    else:
        items = list_identity_folder(root)
        paths, labels = [item.path for item in items], np.array([item.identity for item in items])
        people = len(set(labels))
        check_far_measurable(_impostor_pair_count(labels), target_far, f"{root} ({people} people, {len(paths)} images)")
    embeddings, failures = {}, {}
    for path, outcome in resolve_paths(gallery.resolver, paths, desc="calibration images", progress=progress):
        if isinstance(outcome, GalleryError):
            failures[str(path)] = str(outcome)
        else:
            embeddings[path] = outcome.embedding
    if labels is not None:
        scores, is_same = _all_pairs([embeddings.get(p) for p in paths], labels)
    else:
        keep = [i for i in range(len(first)) if paths[first[i]] in embeddings and paths[second[i]] in embeddings]
        scores = np.array([float(embeddings[paths[first[i]]] @ embeddings[paths[second[i]]]) for i in keep])
        is_same = np.asarray(protocol.is_same, bool)[keep]
    check_far_measurable(int((~is_same).sum()), target_far,
                         f"{root}, once {len(failures)} unusable image(s) are left out,")
    result = gallery.calibrate(scores, is_same, target_far, description=str(root), people=people)
    return {**result, "images": len(paths), "images_failed": len(failures), "failures": failures}


def _impostor_pair_count(labels: np.ndarray) -> int:
    _, sizes = np.unique(labels, return_counts=True)
    total = len(labels) * (len(labels) - 1) // 2
    return int(total - (sizes * (sizes - 1) // 2).sum())


def _all_pairs(embeddings: list, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and same-identity flags of every pair of the embedded images (None: an image that failed)."""
    usable = [i for i, e in enumerate(embeddings) if e is not None]
    if len(usable) < 2:
        return np.zeros(0), np.zeros(0, bool)
    matrix = np.stack([embeddings[i] for i in usable]).astype(np.float32)
    names = labels[usable]
    upper = np.triu_indices(len(usable), 1)
    return (matrix @ matrix.T)[upper], (names[:, None] == names[None, :])[upper]
