"""The service's worker threads: no gallery work ever runs on the event loop.

`GalleryWorkers` owns two thread pools. Readers (decode, detect, embed, search, listing) run
concurrently in `threads` reader threads; each thread opens its own `Gallery` (its own SQLite
connection and index, sharing the embedder and preprocessor), and every read refreshes it to the
store's newest generation, so readers see what any writer, in any process, committed. Writes run in
one writer thread per process and are serialised across processes by the gallery's writer lock.

`IdentifyBatcher` gathers concurrent /identify requests: each request's image is decoded and its
face aligned on its own (a bad image fails only its request), then up to `batch_size` requests, or
those that arrive within `batch_wait_ms` of the first, are embedded in one embedder batch and
searched with one `identify_many` per distinct (k, threshold, closed set). While `max_batches` batches are
running, requests queue up and the next batch is larger: throughput grows with load.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from faceid.gallery.gallery import Gallery
from faceid.gallery.records import GalleryError
from faceid.gallery.samples.resolver import PreparedFace


class GalleryWorkers:
    def __init__(self, template: Gallery, threads: int = 4, max_pixels: int | None = None,
                 threshold_override: str | None = None):
        self.template, self.max_pixels, self.threshold_override = template, max_pixels, threshold_override
        self._local, self._opened, self._lock = threading.local(), [], threading.Lock()
        self.readers = ThreadPoolExecutor(max(1, threads), thread_name_prefix="gallery-reader")
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="gallery-writer")

    def gallery(self) -> Gallery:
        """This thread's own gallery (opened on first use)."""
        gallery = getattr(self._local, "gallery", None)
        if gallery is None:
            resolver = self.template.resolver
            gallery = Gallery(self.template.path, resolver.embedder, resolver.preprocessor,
                              max_pixels=self.max_pixels or resolver.max_pixels)
            gallery.threshold_override = self.threshold_override or self.template.threshold_override
            self._local.gallery = gallery
            with self._lock:
                self._opened.append(gallery)
        return gallery

    async def read(self, function, *args):
        """`function(gallery, *args)` in a reader thread."""
        return await asyncio.get_running_loop().run_in_executor(self.readers, lambda: function(self.gallery(), *args))

    async def write(self, function, *args):
        """`function(gallery, *args)` in the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, lambda: function(self.gallery(), *args))

    def close(self) -> None:
        self.readers.shutdown(wait=True)
        self.writer.shutdown(wait=True)
        for gallery in self._opened:
            gallery.close()


class IdentifyBatcher:
    def __init__(self, workers: GalleryWorkers, batch_size: int = 32, batch_wait_ms: float = 5.0,
                 max_batches: int = 2):
        if batch_size < 1 or batch_wait_ms < 0:
            raise GalleryError(f"batch size must be >= 1 and batch wait >= 0 ms, got {batch_size}, {batch_wait_ms}")
        self.workers, self.batch_size, self.wait = workers, batch_size, batch_wait_ms / 1000
        self.max_batches = max_batches
        self._queue: asyncio.Queue | None = None
        self._collector: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # for tests and the benchmark: how requests were grouped

    async def identify(self, prepared: PreparedFace, k: int, threshold: float | None, closed_set: bool = False):
        """The `IdentifyResult` of one prepared probe, computed in a batch with its neighbours in time."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._collector is None or self._collector.done():
            self._collector = asyncio.get_running_loop().create_task(self._collect())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((prepared, k, threshold, closed_set, future))
        return await future

    async def _collect(self) -> None:
        slots = asyncio.Semaphore(self.max_batches)
        loop = asyncio.get_running_loop()
        while True:
            await slots.acquire()
            batch = [await self._queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.batch_size:
                if self._queue.empty() and loop.time() >= deadline:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            self.batch_sizes.append(len(batch))
            loop.create_task(self._answer(batch, slots))

    async def _answer(self, batch: list, slots: asyncio.Semaphore) -> None:
        try:
            outcomes = await self.workers.read(_identify_batch, [item[:4] for item in batch])
        except Exception as error:  # the whole batch failed (e.g. the embedder): every request hears why
            outcomes = [error] * len(batch)
        finally:
            slots.release()
        for (*_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


def _identify_batch(gallery: Gallery, requests: list[tuple[PreparedFace, int, float | None, bool]]) -> list:
    """One embedder batch for all the probes, then one search per distinct (k, threshold, closed set); per-request
    errors."""
    prepared = [request[0] for request in requests]
    try:
        samples: list = gallery.resolver.embed_prepared(prepared)
    except GalleryError:  # one bad embedding: find which, the others still get answers
        samples = [_embed_one(gallery, p) for p in prepared]
    outcomes: list = [sample if isinstance(sample, Exception) else None for sample in samples]
    groups: dict[tuple, list[int]] = {}
    for position, (_, *search) in enumerate(requests):
        if outcomes[position] is None:
            groups.setdefault(tuple(search), []).append(position)
    for (k, threshold, closed_set), positions in groups.items():
        try:
            results = gallery.identify_many([samples[p] for p in positions], k, threshold, closed_set)
        except GalleryError as error:
            results = [error] * len(positions)
        for position, result in zip(positions, results, strict=True):
            outcomes[position] = result
    return outcomes


def _embed_one(gallery: Gallery, prepared: PreparedFace):
    try:
        return gallery.resolver.embed_prepared([prepared])[0]
    except GalleryError as error:
        return error
