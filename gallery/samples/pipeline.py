"""Image files to gallery samples in bulk, at the embedder's speed: decoding, detection and alignment
run in batches, in `workers` spawned processes (as `faceid align --workers` does), while the main
process embeds batches of crops. Each bad file (missing, unreadable, corrupt, no face) comes back
as its own error naming it, never fatal to the run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from faceid.gallery.records import GalleryError, Sample
from faceid.gallery.samples.enrolment_check import EnrolmentCheck
from faceid.gallery.samples.resolver import SampleResolver, prepare_faces

CHUNK = 16  # images per worker task
EMBED_BATCH = 64  # crops gathered before each embedder call

_preprocessor = None
_check = None


def _init_worker(preprocessor, check, threads: int) -> None:
    global _preprocessor, _check
    import torch

    torch.set_num_threads(threads)
    _preprocessor, _check = preprocessor, check


def _prepare(paths: list[Path]) -> list:
    return prepare_faces(paths, [str(p) for p in paths], _preprocessor, check=_check)


def _prepared_chunks(resolver: SampleResolver, chunks: list[list[Path]], workers: int,
                     check: EnrolmentCheck | None) -> Iterator[list]:
    if workers <= 1:
        for chunk in chunks:
            yield prepare_faces(chunk, [str(p) for p in chunk], resolver.preprocessor, check=check)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with get_context("spawn").Pool(workers, _init_worker, (resolver.preprocessor, check, threads)) as pool:
        yield from pool.imap(_prepare, chunks)


def resolve_paths(resolver: SampleResolver, paths: list[Path], workers: int = 1, desc: str = "images",
                  progress: bool = True,
                  check: EnrolmentCheck | None = None) -> Iterator[tuple[Path, Sample | GalleryError]]:
    """Each path with its sample or its error, in order; `workers` > 1 decodes and detects in that many processes;
    `check`: an enrolment's, refusing the photos it names."""
    if resolver.embedder is None:
        raise GalleryError("images need the gallery to be opened with an embedder")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    paths = [Path(p) for p in paths]
    chunks = [paths[start:start + CHUNK] for start in range(0, len(paths), CHUNK)]
    waiting: list[Path] = []
    prepared: list = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress) as bar:
        for chunk, results in zip(chunks, _prepared_chunks(resolver, chunks, workers, check), strict=True):
            waiting.extend(chunk)
            prepared.extend(results)
            bar.update(len(chunk))
            if len(prepared) >= EMBED_BATCH:
                yield from zip(waiting, resolver.embed_each(prepared), strict=True)
                waiting, prepared = [], []
        yield from zip(waiting, resolver.embed_each(prepared), strict=True)
