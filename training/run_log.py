"""What a run reports as it goes: the progress bar, `config.yaml`, `train.log`, `metrics.csv`,
TensorBoard scalars (when TensorBoard is installed) and `summary.json`.

Every rank keeps one (for the throughput and the summary it returns); only the main rank's writes.
"""

import csv
import json
import logging
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from faceid.config import FaceidConfig

METRIC_COLUMNS = ["step", "epoch", "split", "loss", "lr", "images_per_second", "accuracy", "accuracy_std", "auc",
                  "eer", "tar_at_far_1e-2", "tar_at_far_1e-3"]


class RunLog:
    def __init__(self, run_dir: Path, config: FaceidConfig, resumed: bool, total_steps: int, step: int,
                 writes: bool, progress: bool = True):
        self.run_dir, self.writes = run_dir, writes
        self.started = self.window_start = time.perf_counter()
        self.images_seen = self.window_images = 0
        self.bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not (progress and writes))
        self.handler = self.metrics_file = self.metrics = self.tensorboard = None
        if writes:
            self._open(config, resumed)

    def _open(self, config: FaceidConfig, resumed: bool) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(), sort_keys=False))
        self.handler = logging.FileHandler(self.run_dir / "train.log")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("faceid").addHandler(self.handler)
        logging.getLogger("faceid").setLevel(logging.INFO)
        metrics_path = self.run_dir / "metrics.csv"
        new = not metrics_path.exists() or not resumed
        self.metrics_file = open(metrics_path, "w" if new else "a", newline="")  # closed by close()
        self.metrics = csv.DictWriter(self.metrics_file, fieldnames=METRIC_COLUMNS)
        if new:
            self.metrics.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(self.run_dir / "tensorboard")
        except ImportError:
            self.tensorboard = None

    def advance(self, images: int) -> None:
        """One step done on `images` images (the global batch)."""
        self.images_seen += images
        self.window_images += images
        self.bar.update(1)

    def train_row(self, step: int, epoch: float, loss: float, lr: float) -> None:
        """Record the training loss, with the throughput since the previous row."""
        if not self.writes:
            return
        rate = self.window_images / max(time.perf_counter() - self.window_start, 1e-9)
        self.window_start, self.window_images = time.perf_counter(), 0
        self.record({"step": step, "epoch": epoch, "split": "train", "loss": loss, "lr": lr,
                     "images_per_second": rate})
        self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")

    def record(self, row: dict) -> None:
        """One metrics.csv row (keys among METRIC_COLUMNS), mirrored to TensorBoard."""
        self.metrics.writerow({key: row.get(key, "") for key in METRIC_COLUMNS})
        self.metrics_file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def write_summary(self, summary: dict) -> None:
        if self.writes:
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))

    def close(self) -> None:
        self.bar.close()
        if self.writes:
            self.metrics_file.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
            logging.getLogger("faceid").removeHandler(self.handler)
