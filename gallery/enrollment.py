"""Bulk operations on a gallery: enrolling image lists and identity-folder trees (bad images are
reported and skipped, never fatal) and calibrating the threshold from a folder of identities."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.data.folder import list_identity_folder
from gallery.gallery import Gallery, GalleryError

BATCH_IDENTITIES = 64


def _resolve_each(gallery: Gallery, images: list[Path], failures: dict) -> list:
    samples = []
    for image in images:
        try:
            samples.extend(gallery.resolve([image]))
        except GalleryError as error:
            failures[str(image)] = str(error)
    return samples


def _summary(results: dict, failures: dict, identities: int) -> dict:
    return {"identities": identities, "enrolled_samples": sum(r["added"] for r in results.values()),
            "duplicates": sum(len(r["duplicates"]) for r in results.values()), "failed": len(failures),
            "failures": failures}


def enroll_images(gallery: Gallery, identity: str, images: list[Path]) -> dict:
    if not images:
        raise ValueError("no images to enroll")
    failures: dict = {}
    samples = _resolve_each(gallery, images, failures)
    results = gallery.enroll_many({identity: samples}) if samples else {}
    return _summary(results, failures, 1 if samples else 0)


def enroll_folder(gallery: Gallery, root: Path) -> dict:
    """One identity per sub-folder; commits every BATCH_IDENTITIES identities."""
    by_identity: dict[str, list[Path]] = {}
    for item in list_identity_folder(root):
        by_identity.setdefault(item.identity, []).append(item.path)
    results, failures, pending = {}, {}, {}
    for identity, images in tqdm(by_identity.items(), desc="enroll", unit="identity"):
        samples = _resolve_each(gallery, images, failures)
        if samples:
            pending[identity] = samples
        if len(pending) >= BATCH_IDENTITIES:
            results.update(gallery.enroll_many(pending))
            pending = {}
    if pending:
        results.update(gallery.enroll_many(pending))
    return _summary(results, failures, len(results))


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
    for path in tqdm(protocol.paths, desc="calibration images", unit="img"):
        try:
            embeddings[path] = gallery.resolve([path])[0].embedding
        except GalleryError as error:
            failures[str(path)] = str(error)
    keep = [i for i, (a, b) in enumerate(zip(protocol.first, protocol.second, strict=True))
            if protocol.paths[a] in embeddings and protocol.paths[b] in embeddings]
    scores = np.array([float(embeddings[protocol.paths[protocol.first[i]]]
                             @ embeddings[protocol.paths[protocol.second[i]]]) for i in keep])
    result = gallery.calibrate(scores, protocol.is_same[keep], target_far, description=str(root))
    return {**result, "images_failed": len(failures)}


