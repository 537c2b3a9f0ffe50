"""`faceid bench train`: how fast faceid trains, as ratios to a bare loop of the same network, one run.

For each network (iresnet50 at 112, small_cnn at 64) the rows are, in images/s and as a ratio to the
first row:
- bare: a plain loop on random tensors, model(x) -> the trainer's loss head (ArcFace) -> backward ->
  SGD step; the limit of this machine;
- trainer step: `Trainer._step` on the same tensors (the trainer's overhead);
- pipeline: the trainer's DataLoader alone (decode or cache read + albumentations + normalisation),
  from PNG files and from the memory-mapped crop cache, at each `workers` count;
- end to end: the trainer's loader + step on the aligned image folder and on the cache, at each `workers`;
- compiled: end to end from the files with `training.compile: true` at the eagerly fastest `workers`, its
  compilation time reported apart.
Then the margin head at 10k/100k/1M classes with sample rate 1 and 0.1 (`training.benchmarks.head`).

Faces: the 400 real faces of ORL (`data`, default $FACEID_DATA/orl) aligned once with `faceid.align_tree`
into the work folder (enough for the timed batches to stay within one epoch, so no worker start-up is
timed), or generated faces when that folder is absent; then prepared once into a crop cache. Each
step timing is the median over `steps` steps after `warmup` untimed ones; the bare and the
trainer step are timed in turns, so both see the same load. On CPU: batch 16, few steps;
on CUDA: batch 128, bf16 autocast, channels-last.
"""

import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from faceid.align_tree import align_tree
from faceid.backbones import build_backbone
from faceid.config import load_config
from faceid.data.crop_cache import is_crop_cache, prepare_cache
from faceid.data.folder import list_identity_folder
from faceid.data.locations import real_data
from faceid.data.synthetic import generate_dataset
from faceid.device import resolve_device
from faceid.losses import build_loss
from faceid.training.trainer import Trainer

NETWORKS = {"iresnet50": (112, 512), "small_cnn": (64, 128)}
LOSS = {"s": 64.0, "m": 0.5}


@dataclass(frozen=True)
class Settings:
    networks: tuple[str, ...]
    batch: int
    warmup: int
    steps: int
    pipeline_batches: int
    workers: tuple[int, ...]
    faces: int
    compile_on_cpu: tuple[str, ...]  # the networks compiled on CPU too, where inductor compiles slowly
    head: dict

    @staticmethod
    def choose(device: torch.device, quick: bool) -> "Settings":
        if quick:
            return Settings(("small_cnn",), 8, 1, 2, 3, (0, 1), 48, (),
                            {"classes": (1_000, 10_000), "batch": 32, "dim": 64})
        if device.type == "cuda":
            return Settings(tuple(NETWORKS), 128, 5, 20, 30, (0, 2, 4, 8), 400, tuple(NETWORKS),
                            {"classes": (10_000, 100_000, 1_000_000), "batch": 128, "dim": 512})
        return Settings(tuple(NETWORKS), 16, 2, 5, 12, (0, 1, 2), 400, ("small_cnn",),
                        {"classes": (10_000, 100_000, 1_000_000), "batch": 128, "dim": 512})


def aligned_faces(work: Path, source: Path, count: int, progress: bool = True) -> Path:
    """An aligned identity-folder tree of about `count` faces in `work`, made once and reused."""
    if source.is_dir():
        listing = work / "sources.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{item.path.resolve()}\n" for item in list_identity_folder(source)[:count]))
        align_tree(listing, work / "aligned", workers=1, size=112, progress=progress)
        return work / "aligned"
    print(f"({source} not found: generated faces instead)")
    identities = max(2, count // 10)
    if not (work / "synthetic" / "aligned").is_dir():
        generate_dataset(work / "synthetic", identities=identities, images_per_identity=10, progress=progress)
    return work / "synthetic" / "aligned"


def _per_second(images: int, seconds: float) -> float:
    return images / max(seconds, 1e-9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _paired(first, second, warmup: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per call of `first()` and of `second()`, called in turns so that both see the
    same load from whatever else runs on the machine."""
    for _ in range(warmup):
        first()
        second()
    times: tuple[list, list] = ([], [])
    for _ in range(steps):
        for function, bucket in zip((first, second), times, strict=True):
            _sync(device)
            started = time.perf_counter()
            function()
            _sync(device)
            bucket.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def _timed_batches(trainer: Trainer, warmup: int, count: int, train: bool) -> float:
    """Seconds per batch of the trainer's loader, over `count` batches after `warmup`, across epochs as
    `train()` goes: with `_step` on each batch (`train`: the median interval between steps) or without
    (the mean, as prefetched batches arrive at once)."""
    intervals, seen = [], 0
    last = time.perf_counter()
    while seen < warmup + count:
        for images, labels in trainer._loader():
            if train:
                trainer._step(images, labels)
            else:
                trainer.step += 1  # the loader goes on to the next position, as training would
            _sync(trainer.device)
            now, seen = time.perf_counter(), seen + 1
            if seen > warmup:
                intervals.append(now - last)
            last = now
            if seen == warmup + count:
                break
    return statistics.median(intervals) if train else sum(intervals) / len(intervals)


class TrainBenchmark:
    def __init__(self, device: torch.device, settings: Settings, folder: Path, cache: Path, work: Path):
        self.device, self.settings, self.folder, self.cache, self.work = device, settings, folder, cache, work
        self.rows: list[dict] = []

    def trainer(self, network: str, root: Path, workers: int = 0, compile_: bool = False) -> Trainer:
        size, dim = NETWORKS[network]
        cuda = self.device.type == "cuda"
        overrides = [f"device={self.device.type}", f"data.root={root}", "data.validation_fraction=0.0",
                     f"model.backbone={network}", f"model.input_size={size}", f"model.embedding_dim={dim}",
                     "loss.name=arcface", f"loss.params={{s: {LOSS['s']}, m: {LOSS['m']}}}", "training.optimizer=sgd",
                     f"training.batch_size={self.settings.batch}", "training.epochs=1000",
                     "training.validate_every_epochs=null", "training.augmentation=light",
                     f"training.workers={workers}", f"training.compile={str(compile_).lower()}",
                     f"training.amp={'bf16' if cuda else 'none'}", f"training.channels_last={str(cuda).lower()}",
                     f"training.run_dir={self.work / 'run'}"]
        return Trainer(load_config(None, overrides), progress=False)

    def add(self, network: str, case: str, workers, seconds_per_batch: float, note: str = "") -> None:
        speed = _per_second(self.settings.batch, seconds_per_batch)
        bare = next((r["img_s"] for r in self.rows if r["network"] == network and r["case"] == "bare"), speed)
        load = os.getloadavg()[0]  # other work on the machine: ratios from rows under different loads are noisy
        note = f"load {load:.1f}" + (f"; {note}" if note else "")
        row = {"network": network, "case": case, "workers": workers, "img_s": speed, "ratio": speed / bare,
               "load": load, "note": note}
        self.rows.append(row)
        print(f"| {network} | {case} | {workers} | {speed:,.1f} | {row['ratio']:.2f}x | {note} |", flush=True)

    def bare_step(self, network: str, images: torch.Tensor, labels: torch.Tensor, classes: int):
        """The plain loop's step: model(x) -> ArcFace -> backward -> SGD, as the trainer configures them."""
        size, dim = NETWORKS[network]
        torch.manual_seed(0)
        backbone = build_backbone(network, dim, size).to(self.device)
        cuda = self.device.type == "cuda"
        if cuda:
            backbone = backbone.to(memory_format=torch.channels_last)
            images = images.contiguous(memory_format=torch.channels_last)
        loss = build_loss("arcface", dim, classes, **LOSS).to(self.device)
        parameters = list(backbone.parameters()) + list(loss.parameters())
        optimizer = torch.optim.SGD(parameters, lr=0.1, momentum=0.9, weight_decay=5e-4)
        backbone.train()

        def step():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
                value = loss(backbone(images), labels)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()

        return step

    def network(self, network: str) -> None:
        s = self.settings
        trainer = self.trainer(network, self.folder)
        generator = torch.Generator().manual_seed(0)
        size = NETWORKS[network][0]
        images = torch.randn(s.batch, 3, size, size, generator=generator).to(self.device)
        labels = torch.randint(0, trainer.train_set.num_classes, (s.batch,), generator=generator).to(self.device)
        bare, step = _paired(self.bare_step(network, images, labels, trainer.train_set.num_classes),
                             lambda: trainer._step(images, labels), s.warmup, s.steps, self.device)
        self.add(network, "bare", "-", bare)
        self.add(network, "trainer step", "-", step)
        for source, root in (("files", self.folder), ("cache", self.cache)):
            for workers in s.workers:
                seconds = _timed_batches(self.trainer(network, root, workers), 2, s.pipeline_batches, train=False)
                self.add(network, f"pipeline ({source})", workers, seconds, "decode + augment, no model")
        for source, root in (("files", self.folder), ("cache", self.cache)):
            for workers in s.workers:
                seconds = _timed_batches(self.trainer(network, root, workers), s.warmup, s.steps, train=True)
                self.add(network, f"end to end ({source})", workers, seconds)
        fastest = max((r for r in self.rows if r["network"] == network and r["case"] == "end to end (files)"),
                      key=lambda r: r["img_s"])
        self.compiled(network, fastest["workers"])

    def verdict(self, network: str) -> str:
        """The targets for `network`: trainer step >= 0.95x bare, end to end >= 0.9x bare."""
        rows = [r for r in self.rows if r["network"] == network]
        step = next(r for r in rows if r["case"] == "trainer step")
        end_to_end = [r for r in rows if r["case"].startswith("end to end")]
        enough = next((r for r in end_to_end if r["ratio"] >= 0.9), None)
        best = max(end_to_end, key=lambda r: r["ratio"])
        return (f"{network}: trainer step {step['ratio']:.2f}x bare (target >= 0.95: "
                f"{'met' if step['ratio'] >= 0.95 else 'missed'}); end to end >= 0.9x bare: "
                + (f"met with workers={enough['workers']} ({enough['case']}, {enough['ratio']:.2f}x)" if enough
                   else f"missed (best {best['ratio']:.2f}x, {best['case']}, workers={best['workers']})"))

    def compiled(self, network: str, workers: int) -> None:
        """End to end from the files with `training.compile: true`, at the `workers` that were fastest eagerly."""
        s = self.settings
        if self.device.type == "cpu" and network not in s.compile_on_cpu:
            print(f"| {network} | compiled | {workers} | - | - | skipped on CPU: inductor needs many minutes here |")
            return
        trainer = self.trainer(network, self.folder, workers, compile_=True)
        started = time.perf_counter()
        images, labels = next(iter(trainer._loader()))
        trainer._step(images, labels)
        compile_seconds = time.perf_counter() - started
        seconds = _timed_batches(trainer, s.warmup, s.steps, train=True)
        self.add(network, "end to end, compiled", workers, seconds, f"compilation {compile_seconds:.0f} s")


def run_train_benchmark(device: str = "auto", quick: bool = False, data: Path | None = None,
                        work: Path = Path("runs/bench-train"), progress: bool = True) -> dict:
    """Print the table; return {"rows": [...], "head": [...] or None}. `data`: an identity-folder tree of
    real faces (default $FACEID_DATA/orl; DataNotConfigured when neither is given)."""
    target = resolve_device(device)
    source = real_data(data, "orl")
    settings = Settings.choose(target, quick)
    work = Path(work) / ("quick" if quick else "full")
    folder = aligned_faces(work, source, settings.faces, progress)
    cache = work / "cache"
    if not is_crop_cache(cache):
        summary = prepare_cache(folder, cache, progress=progress)
        for item in summary["skipped"]:
            print(f"skipped {item['reason']}")
    images = len(list_identity_folder(folder))
    print(f"\nfaceid bench train  device={target}  batch={settings.batch}  {images} aligned faces from {folder}  "
          f"(median of {settings.steps} steps after {settings.warmup} warm-up; pipeline: {settings.pipeline_batches} "
          f"batches)\n")
    print("| network | case | workers | img/s | x bare | note |\n|---|---|---:|---:|---:|---|", flush=True)
    benchmark = TrainBenchmark(target, settings, folder, cache, work)
    for network in settings.networks:
        benchmark.network(network)
    print("\n" + "\n".join(benchmark.verdict(network) for network in settings.networks))
    shutil.rmtree(work / "run", ignore_errors=True)
    return {"rows": benchmark.rows, "head": _head(target, settings)}


def _head(device: torch.device, settings: Settings) -> list[dict]:
    from faceid.training.benchmarks.head import head_benchmark_rows, print_head_table

    print(f"\nmargin head (ArcFace), batch {settings.head['batch']}, d {settings.head['dim']}, sample rate 1 and 0.1\n")
    rows = head_benchmark_rows(settings.head["classes"], (1.0, 0.1), settings.head["batch"], settings.head["dim"],
                               str(device))
    print_head_table(rows)
    largest = max(r["classes"] for r in rows)
    speedup = next(r["speedup"] for r in rows if r["classes"] == largest and r["rate"] == 0.1)
    print(f"\nrate 0.1 at {largest:,} classes: {speedup:.1f}x faster than rate 1 (target >= 3: "
          f"{'met' if speedup >= 3 else 'missed'})")
    return rows
