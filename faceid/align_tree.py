"""`faceid align SRC DST`: detect and align every image of a tree, resumably, in parallel.

SRC is an identity-folder tree (`SRC/<identity>/<image>`), a flat folder, or a text file listing
image paths. DST receives the aligned crops under the same relative names (as PNG), plus
`manifest.jsonl`: one line per source image with its status (ok, no_face, error), score, number
of faces, reason and detail. The manifest is appended and flushed per image, so a killed run resumes
where it stopped; images already in it are skipped unless `overwrite` is set. SRC is only read.
"""

import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import cv2
from tqdm import tqdm

from faceid.data.folder import is_image_file
from faceid.face_selection import DEFAULT_SELECT
from faceid.files import atomic_write

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class AlignJob:
    source: Path
    identity: str
    relative: str  # output path relative to DST, without suffix


def list_jobs(source: Path) -> list[AlignJob]:
    """Images of an identity-folder tree, a flat folder, or a list file."""
    source = Path(source)
    if source.is_file():
        paths = [Path(line.strip()) for line in source.read_text().splitlines() if line.strip()]
        return [AlignJob(p, p.parent.name, f"{p.parent.name}/{p.stem}") for p in paths]
    if not source.is_dir():
        raise ValueError(f"{source} is neither a folder nor a list file")
    jobs = []
    for path in sorted(source.rglob("*")):
        if is_image_file(path):
            relative = path.relative_to(source)
            identity = relative.parts[0] if len(relative.parts) > 1 else ""
            jobs.append(AlignJob(path, identity, str(relative.with_suffix(""))))
    if not jobs:
        raise ValueError(f"{source} holds no images")
    return jobs


_preprocessor = None


def _init_worker(options: dict) -> None:
    global _preprocessor
    import torch

    from faceid.preprocessing import FacePreprocessor

    torch.set_num_threads(options.pop("threads"))
    _preprocessor = FacePreprocessor(**options)


def _process(job_and_destination: tuple[AlignJob, str]) -> dict:
    job, destination = job_and_destination
    record = {"source": str(job.source), "identity": job.identity, "output": None, "status": "error",
              "score": None, "faces": 0, "reason": "", "detail": ""}
    try:
        faces = _preprocessor(job.source)
    except Exception as error:  # one bad file never stops the run: it is recorded with its reason
        record.update(reason=getattr(error, "reason", type(error).__name__), detail=str(error))
        return record
    record["faces"] = len(faces)
    if not faces:
        record.update(status="no_face", reason="no face above the minimum score")
        return record
    outputs = []
    for index, face in enumerate(faces):
        suffix = "" if len(faces) == 1 else f"_{index}"
        output = Path(destination) / f"{job.relative}{suffix}.png"
        with atomic_write(output) as temporary:
            cv2.imwrite(str(temporary), face.crop[..., ::-1])
        outputs.append(str(output))
    record.update(status="ok", output=outputs[0] if len(outputs) == 1 else outputs,
                  score=round(max(f.face.score for f in faces), 5))
    return record


def read_manifest(destination: Path) -> list[dict]:
    manifest = Path(destination) / MANIFEST
    if not manifest.is_file():
        return []
    records = []
    for line in manifest.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by a crash: that image is simply processed again
    return records


def align_tree(source: Path, destination: Path, workers: int = 1, overwrite: bool = False, select: str = DEFAULT_SELECT,
               size=112, device: str = "cpu", progress: bool = True, **detector_options) -> dict:
    """Align every image under `source` into `destination`; returns the run's summary."""
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve() or source.resolve() in destination.resolve().parents:
        raise ValueError(f"destination {destination} must lie outside the source {source}")
    jobs = list_jobs(source)
    destination.mkdir(parents=True, exist_ok=True)
    done = set() if overwrite else {record["source"] for record in read_manifest(destination)}
    todo = [job for job in jobs if str(job.source) not in done]
    if overwrite:
        (destination / MANIFEST).unlink(missing_ok=True)
    options = {"select": select, "size": size, "device": device, "threads": max(1, (os.cpu_count() or 1) // workers),
               **detector_options}
    counts: Counter = Counter()
    reasons: Counter = Counter()
    faces_found = 0
    started = time.perf_counter()
    with open(destination / MANIFEST, "a") as manifest, \
            tqdm(total=len(todo), desc="align", unit="img", disable=not progress) as bar:
        def record(result):
            nonlocal faces_found
            manifest.write(json.dumps(result) + "\n")
            manifest.flush()
            counts[result["status"]] += 1
            faces_found += result["faces"]
            if result["status"] != "ok":
                reasons[result["reason"]] += 1
            bar.update(1)

        work = [(job, str(destination)) for job in todo]
        if workers <= 1:
            _init_worker(dict(options))
            for item in work:
                record(_process(item))
        else:
            with get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(options,)) as pool:
                for result in pool.imap_unordered(_process, work, chunksize=4):
                    record(result)
    elapsed = time.perf_counter() - started
    return {"images": len(jobs), "skipped_already_done": len(jobs) - len(todo), "processed": len(todo),
            "ok": counts["ok"], "no_face": counts["no_face"], "error": counts["error"], "faces_found": faces_found,
            "failures_by_reason": dict(reasons), "seconds": round(elapsed, 2),
            "images_per_second": round(len(todo) / elapsed, 2) if todo and elapsed > 0 else None,
            "manifest": str(destination / MANIFEST)}
