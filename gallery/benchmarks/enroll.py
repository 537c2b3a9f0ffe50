"""`faceid bench enroll`: bulk enrolment images/s (`enroll_images`: decode, detect, align, embed and
commit, in-process and with worker processes) against the end-to-end figure of `faceid bench embed`
(decode + detect + align + embed, one image at a time) for the same random-weight mobilefacenet fp32
ONNX model on the same photos, measured in the same run; the acceptance target is >= 0.9x."""

import os
import tempfile
import time
from pathlib import Path

from faceid.export.benchmarks.embed import END_TO_END_IMAGES, end_to_end, random_onnx
from faceid.gallery.enrollment import enroll_images
from faceid.gallery.session import open_gallery

BACKBONE = "mobilefacenet"


def _enroll_rate(model: Path, paths: list[Path], workers: int, gallery_path: Path) -> float:
    gallery = open_gallery(gallery_path, str(model), device="cpu", create=True)
    started = time.perf_counter()
    summary = enroll_images(gallery, "bench", paths, workers=workers, progress=False)
    rate = len(paths) / (time.perf_counter() - started)
    gallery.close()
    if not summary["enrolled_samples"]:
        raise ValueError(f"no face was enrolled from {len(paths)} images: {summary['failures']}")
    return rate


def run_enroll_benchmark(photos: Path, workers: int = 2, repeats: int = 2) -> dict[str, float]:
    """Best of `repeats` interleaved rounds of each figure; returns images/s by row."""
    paths = sorted(Path(photos).glob("*.jpg"))[:END_TO_END_IMAGES]
    if not paths:
        raise ValueError(f"{photos} holds no .jpg photos to enroll")
    print(f"faceid bench enroll  {len(paths)} photos of {photos}, {BACKBONE} fp32 ONNX (random weights), CPU, "
          f"{os.cpu_count()} cores; best of {repeats}")
    rows = {"bench embed end to end": [], "enroll, 1 process": []}
    if workers > 1:
        rows[f"enroll, {workers} workers"] = []
    with tempfile.TemporaryDirectory() as scratch:
        _, model = random_onnx(BACKBONE, Path(scratch))
        for repeat in range(repeats):
            rows["bench embed end to end"].append(end_to_end(Path(photos), model))
            for count in sorted({1, workers}):
                name = "enroll, 1 process" if count == 1 else f"enroll, {count} workers"
                rows[name].append(_enroll_rate(model, paths, count, Path(scratch) / f"g{repeat}-{count}"))
    best = {name: max(rates) for name, rates in rows.items()}
    baseline = best["bench embed end to end"]
    for name, rate in best.items():
        print(f"{name:<26}{rate:>9.2f} images/s {rate / baseline:>7.2f}x", flush=True)
    return best
