"""The gallery part of `faceid demo`, for one model: calibrate a threshold on one group of held-out
identities, enroll a second group, and identify probes of the enrolled group and of a third group that
was never enrolled (open set), printing a decision table."""

from pathlib import Path

import numpy as np

from faceid.data.folder import LabelledImage
from faceid.data.images import read_rgb
from faceid.data.protocols import build_all_pairs
from faceid.embedder import Embedder
from faceid.gallery.calibration import calibrate
from faceid.gallery.gallery import UNKNOWN, Gallery

TARGET_FAR = 1e-2
ENROLLED_IMAGES = 4


def gallery_demo(embedder: Embedder, held_out: list[LabelledImage], gallery_path: Path, seed: int = 0) -> dict:
    """`held_out` are crops in `embedder`'s alignment; the gallery is made afresh at `gallery_path`."""
    identities = sorted({item.identity for item in held_out})
    if len(identities) < 6:
        raise ValueError(f"the gallery demo needs at least 6 held-out identities (2 to calibrate, 2 to enroll, "
                         f"2 strangers), got {len(identities)}: raise synth.identities or data.validation_fraction")
    third = len(identities) // 3
    calibration, enrolled, strangers = identities[:third], identities[third:2 * third], identities[2 * third:]
    gallery_path = Path(gallery_path)
    if (gallery_path / "gallery.db").exists():
        for file in gallery_path.iterdir():
            file.unlink()
    with Gallery.create(gallery_path, embedder) as gallery:
        target_far = _calibrate(gallery, embedder, [i for i in held_out if i.identity in calibration], seed)
        probes = []
        for identity in enrolled:
            images = [i.path for i in held_out if i.identity == identity]
            gallery.enroll(identity, images[:ENROLLED_IMAGES])
            probes += [(path, identity) for path in images[ENROLLED_IMAGES:]]
        probes += [(i.path, None) for i in held_out if i.identity in strangers]
        results = gallery.identify_many([p for p, _ in probes], k=3)
    decided = [(result, truth) for result, (_, truth) in zip(results, probes, strict=True)]
    correct = np.mean([r.identity == truth for r, truth in decided if truth is not None])
    rejected = np.mean([r.identity == UNKNOWN for r, truth in decided if truth is None])
    print(f"      gallery {gallery_path}: {len(enrolled)} identities x {ENROLLED_IMAGES} images; "
          f"{len(strangers)} further identities never enrolled")
    _print_table(probes, results)
    mated = sum(truth is not None for _, truth in probes)
    print(f"      enrolled probes identified correctly: {100 * correct:.1f}% of {mated}; strangers answered unknown: "
          f"{100 * rejected:.1f}% of {len(probes) - mated} (threshold {results[0].threshold:.3f})")
    return {"identified": float(correct), "rejected": float(rejected), "threshold": results[0].threshold,
            "target_far": target_far}


def _calibrate(gallery: Gallery, embedder: Embedder, calibration: list[LabelledImage], seed: int) -> float:
    """Calibrate the gallery's threshold on all pairs of the calibration identities; returns the target FAR."""
    pairs = build_all_pairs(calibration, seed)
    vectors = dict(zip(pairs.paths, embedder.embed([read_rgb(p) for p in pairs.paths]), strict=True))
    scores = np.array([vectors[pairs.paths[a]] @ vectors[pairs.paths[b]]
                       for a, b in zip(pairs.first, pairs.second, strict=True)])
    target_far = max(TARGET_FAR, 1.0 / int((~pairs.is_same).sum()))  # a small demo cannot measure 1e-2
    calibrated = calibrate(gallery, scores, pairs.is_same, target_far, description="demo calibration identities")
    identities = len({item.identity for item in calibration})
    print(f"      threshold {calibrated['threshold']:.3f} calibrated on {identities} other held-out identities "
          f"({calibrated['pairs']} pairs) for FAR {target_far:.3g} (measured FAR {calibrated['far']:.4f}, "
          f"TAR {calibrated['tar']:.3f})")
    return target_far


def _print_table(probes: list[tuple[Path, str | None]], results: list) -> None:
    """One probe of each of 4 enrolled people and of 4 strangers: truth, decision, best candidate."""
    print(f"      {'probe':<34} {'truth':<10} {'decision':<10} best candidate")
    shown, seen = [], set()
    for (path, truth), result in zip(probes, results, strict=True):
        person = truth or Path(path).parent.name
        if person not in seen and sum(1 for _, _, t in shown if (t is None) == (truth is None)) < 4:
            seen.add(person)
            shown.append((path, result, truth))
    for path, result, truth in shown:
        name, score = result.candidates[0]
        print(f"      {Path(path).parent.name + '/' + Path(path).name:<34} {truth or 'stranger':<10} "
              f"{result.identity:<10} {name} {score:.3f}")
