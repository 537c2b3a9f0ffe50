"""`faceid bench detect`: detection + alignment throughput on real photos, at 1 and 2 workers.

Throughput is measured end to end through `faceid align` (decode, detect, align, write) into a
temporary folder; the alignment-to-detection time ratio is measured in-process on the same images.
"""

import tempfile
import time
from pathlib import Path

from faceid.align_tree import align_tree, list_jobs
from faceid.data.images import read_rgb
from faceid.detection import FaceDetector
from faceid.preprocessing import FacePreprocessor


def run_detection_benchmark(data: Path, limit: int | None = 200, workers: tuple[int, ...] = (1, 2)) -> dict:
    data = Path(data)
    jobs = list_jobs(data)[:limit]
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "images.txt"
        listing.write_text("\n".join(str(job.source) for job in jobs))
        rates = {}
        for count in workers:
            summary = align_tree(listing, Path(scratch) / f"out{count}", workers=count, progress=False)
            rates[count] = summary["images_per_second"]
            found = summary["ok"]
    preprocessor = FacePreprocessor(FaceDetector(device="cpu"), select="largest")
    detect_seconds = align_seconds = 0.0
    for job in jobs:
        rgb = read_rgb(job.source)
        started = time.perf_counter()
        faces = preprocessor.detector.detect_arrays([rgb])[0]
        detect_seconds += time.perf_counter() - started
        started = time.perf_counter()
        preprocessor.align(rgb, faces)
        align_seconds += time.perf_counter() - started
    result = {"images": len(jobs), "faces_found_in": found, "images_per_second": rates,
              "align_to_detect_time_ratio": align_seconds / detect_seconds}
    print(f"faceid bench detect  data={data}  images={len(jobs)}  (CPU, decode+detect+align+write)")
    for count, rate in rates.items():
        print(f"  workers={count}: {rate:.2f} images/s  ({rate / rates[workers[0]]:.2f}x workers={workers[0]})")
    print(f"  images with a face: {found}/{len(jobs)}")
    print(f"  alignment time / detection time: {result['align_to_detect_time_ratio']:.4f}")
    return result
