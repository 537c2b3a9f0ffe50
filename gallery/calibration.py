"""Setting a gallery's decision threshold at a target false accept rate: from pair scores (`calibrate`), or from
a folder of people who are not enrolled (`calibrate_from_folder`, `faceid gallery calibrate`), whose pairs are counted
before anything is embedded."""

import time
from pathlib import Path

import numpy as np

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.samples.pipeline import resolve_paths
from faceid.gallery.threshold_policy import DEFAULT_TARGET_FAR, check_far_measurable, check_target_far


def calibrate(gallery: Gallery, scores, is_same, target_far: float = DEFAULT_TARGET_FAR, description: str = "",
              people: int | None = None) -> dict:
    """Set the gallery's threshold from genuine/impostor pair scores (e.g. an evaluation run) of `people`
    identities: the most permissive threshold whose FAR does not exceed `target_far`."""
    from faceid.evaluation.verification import threshold_at_far

    check_target_far(target_far)
    check_far_measurable(int((~np.asarray(is_same, bool)).sum()), target_far, "the calibration pairs")
    result = threshold_at_far(scores, is_same, target_far)
    source = {"source": "calibrate", "target_far": target_far, "far": result["far"], "tar": result["tar"],
              "pairs": int(len(is_same)), "people": people, "description": description, "time": time.time()}
    gallery.set_threshold(result["threshold"], source)
    return {"threshold": result["threshold"], **source}


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
    result = calibrate(gallery, scores, is_same, target_far, description=str(root), people=people)
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
