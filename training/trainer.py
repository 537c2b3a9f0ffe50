"""The training loop: any backbone with any loss from `faceid.losses`, on one CPU or many GPUs.

A run directory holds `config.yaml`, `train.log`, `metrics.csv`, `checkpoints/last.pt` (the whole
training state: model, loss, optimiser, schedule, scaler, RNG states, position), `best.pt` and
`model.pt` (backbone checkpoints any embedder loads), and `summary.json`.
"""

import csv
import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from evaluation.verification import verification_report
from faceid.backbones import build_backbone
from faceid.config import FaceidConfig
from faceid.data.dataset import FolderDataset, RecordIODataset, split_identities
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.data.protocols import build_pair_protocol
from faceid.device import resolve_device
from faceid.embedding import Preprocessing, save_backbone_checkpoint
from faceid.losses import build_loss
from faceid.losses.margin import CombinedMarginLoss
from training.augmentation import Augmentation
from training.distributed import DistributedContext, init_distributed, shutdown
from training.partial_fc import ShardedMarginHead
from training.samplers import build_sampler
from training.schedule import LearningRateSchedule

log = logging.getLogger("faceid.train")
PAIR_LOSSES = ("contrastive", "triplet")
METRIC_COLUMNS = ["step", "epoch", "split", "loss", "lr", "images_per_second", "accuracy", "accuracy_std", "auc",
                  "eer", "tar_at_far_1e-2", "tar_at_far_1e-3"]


class TrainingSamples(torch.utils.data.Dataset):
    """(index, augmentation seed) -> (normalised CHW float tensor, label)."""

    def __init__(self, dataset, augmentation: Augmentation, preprocessing: Preprocessing):
        self.dataset, self.augmentation, self.preprocessing = dataset, augmentation, preprocessing

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        crop, label = self.dataset.load(index)
        crop = self.augmentation(crop, seed)
        return torch.from_numpy(self.preprocessing.apply([crop])[0]), label


class TrainModule(nn.Module):
    """Backbone and loss as one module, so DDP sees (and averages) both."""

    def __init__(self, backbone: nn.Module, loss: nn.Module):
        super().__init__()
        self.backbone, self.loss = backbone, loss

    def forward(self, images, labels):
        return self.loss(self.backbone(images), labels)


def config_hash(config: FaceidConfig) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


def _datasets(config: FaceidConfig):
    data = config.data
    if data.format == "recordio":
        if not data.rec:
            raise ValueError("data.rec must name train.rec when data.format is recordio")
        train = RecordIODataset(data.rec)
        validation = list_identity_folder(data.validation_root) if data.validation_root else []
        return train, validation
    if not data.root:
        raise ValueError("data.root must name an identity-folder tree of aligned faces")
    images = list_identity_folder(data.root)
    if data.validation_root:
        return FolderDataset(images), list_identity_folder(data.validation_root)
    train_images, validation = split_identities(images, data.validation_fraction, config.seed)
    return FolderDataset(train_images), validation


def _atomic_save(payload, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


class Trainer:
    def __init__(self, config: FaceidConfig, resume: str | Path | None = None, progress: bool = True):
        self.config, self.progress = config, progress
        device = resolve_device(config.device)
        self.context: DistributedContext = init_distributed(device)
        if device.type == "cuda" and self.context.enabled:
            device = torch.device("cuda", self.context.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.run_dir = Path(config.training.run_dir)
        self.resume_path = self._resume_path(resume)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed)
        self._build()

    def _resume_path(self, resume) -> Path | None:
        if resume is None:
            return None
        path = self.run_dir / "checkpoints" / "last.pt" if str(resume) == "auto" else Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        return path

    def _build(self) -> None:
        config, t = self.config, self.config.training
        self.train_set, self.validation_images = _datasets(config)
        self.preprocessing = Preprocessing(input_size=config.model.input_size)
        self.backbone = build_backbone(config.model.backbone, config.model.embedding_dim, config.model.input_size,
                                       **config.model.options).to(self.device)
        if self.device.type == "cuda" and self.context.enabled:
            self.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(self.backbone)
        if t.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        loss = build_loss(config.loss.name, config.model.embedding_dim, self.train_set.num_classes, **config.loss.params)
        self.sharded = t.model_parallel_head and self.context.enabled
        if self.sharded:
            if not isinstance(loss, CombinedMarginLoss):
                raise ValueError(f"model_parallel_head needs a margin head (arcface, cosface, amsoftmax, combined), "
                                 f"got {config.loss.name!r}")
            loss = ShardedMarginHead(loss, self.context.rank, self.context.world_size)
        self.loss = loss.to(self.device)
        if self.context.enabled:
            if self.sharded:
                self.model = DistributedDataParallel(self.backbone)
            else:
                self.model = DistributedDataParallel(TrainModule(self.backbone, self.loss))
        else:
            self.model = TrainModule(self.backbone, self.loss)

        sampler_name = t.sampler if t.sampler != "auto" else (
            "pk" if config.loss.name.split("+")[0] in PAIR_LOSSES else "random")
        options = {"images_per_identity": t.images_per_identity} if sampler_name == "pk" else {}
        self.sampler = build_sampler(sampler_name, self.train_set.labels, t.batch_size, config.seed, **options)
        self.steps_per_epoch = len(self.sampler.batches(0))
        self.total_steps = min(t.max_steps or 10**12, t.epochs * self.steps_per_epoch)
        self.samples = TrainingSamples(self.train_set, Augmentation(t.augmentation), self.preprocessing)

        loss_lr = t.loss_lr or t.lr
        loss_decay = t.weight_decay if t.loss_weight_decay is None else t.loss_weight_decay
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": t.lr,
                   "weight_decay": t.weight_decay},
                  {"params": [p for p in self.loss.parameters() if p.requires_grad], "lr": loss_lr,
                   "weight_decay": loss_decay}]
        groups = [g for g in groups if g["params"]]
        if t.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, momentum=t.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups)
        self.schedule = LearningRateSchedule(t.schedule, self.total_steps, self.steps_per_epoch,
                                             [g["lr"] for g in groups])
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp) if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.best_metric, self.bad_validations = 0, -1.0, 0
        if self.validation_images:
            self.validation_protocol = build_pair_protocol(self.validation_images, config.evaluation.folds,
                                                              config.evaluation.pairs_per_fold, config.seed)

    # ----- state -------------------------------------------------------------------------------
    def _loss_state(self) -> dict:
        if self.sharded:
            return {"weight": self.loss.full_weight().cpu()}
        return self.loss.state_dict()

    def state(self) -> dict:
        return {"format": "faceid-training-1", "step": self.step, "config": self.config.model_dump(),
                "backbone": self.backbone.state_dict(), "loss": self._loss_state(),
                "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "best_metric": self.best_metric,
                "bad_validations": self.bad_validations, "num_classes": self.train_set.num_classes,
                "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}}

    def load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("format") != "faceid-training-1":
            raise ValueError(f"{path} is not a faceid training checkpoint")
        self.backbone.load_state_dict(state["backbone"])
        if self.sharded:
            with torch.no_grad():
                self.loss.weight.copy_(state["loss"]["weight"][self.loss.start:self.loss.end])
        else:
            self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.best_metric = state["step"], state["best_metric"]
        self.bad_validations = state["bad_validations"]
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])

    def save_checkpoint(self, name: str = "last.pt") -> None:
        state = self.state()  # every rank joins the gather of a sharded head
        if self.context.is_main:
            _atomic_save(state, self.run_dir / "checkpoints" / name)

    def save_model(self, path: Path) -> None:
        if self.context.is_main:
            save_backbone_checkpoint(path, self.backbone, self.config.model.backbone, self.config.model.embedding_dim,
                                     self.config.model.input_size,
                                     extra={"loss": self.config.loss.name, "config_hash": config_hash(self.config),
                                            "step": self.step, "backbone_options": self.config.model.options})

    # ----- validation --------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict:
        protocol = self.validation_protocol
        self.backbone.eval()
        embeddings = []
        for start in range(0, len(protocol.paths), 64):
            crops = [read_rgb(path) for path in protocol.paths[start:start + 64]]
            batch = torch.from_numpy(self.preprocessing.apply(crops)).to(self.device)
            embeddings.append(nn.functional.normalize(self.backbone(batch).float(), dim=1).cpu().numpy())
        self.backbone.train()
        embeddings = np.concatenate(embeddings)
        scores = (embeddings[protocol.first] * embeddings[protocol.second]).sum(1)
        return verification_report(scores, protocol.is_same, folds=protocol.fold, seed=self.config.seed)

    # ----- the loop ----------------------------------------------------------------------------
    def _batches(self, epoch: int, skip: int):
        local = self.context.local_slice(self.config.training.batch_size)
        for position, batch in enumerate(self.sampler.batches(epoch)):
            if position < skip:
                continue
            seeds = [hash((self.config.seed, epoch, position, k)) % 2**31 for k in range(len(batch))]
            yield [(int(index), seed) for index, seed in list(zip(batch, seeds))[local]]

    def _open_logs(self):
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(self.config.model_dump(), sort_keys=False))
        handler = logging.FileHandler(self.run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("faceid").addHandler(handler)
        logging.getLogger("faceid").setLevel(logging.INFO)
        metrics_path = self.run_dir / "metrics.csv"
        new = not metrics_path.exists() or self.resume_path is None
        self.metrics_file = open(metrics_path, "w" if new else "a", newline="")
        self.metrics = csv.DictWriter(self.metrics_file, fieldnames=METRIC_COLUMNS)
        if new:
            self.metrics.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(self.run_dir / "tensorboard")
        except ImportError:
            self.tensorboard = None
        return handler

    def _record(self, row: dict) -> None:
        self.metrics.writerow({key: row.get(key, "") for key in METRIC_COLUMNS})
        self.metrics_file.flush()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def _global_loss(self, value: torch.Tensor) -> float:
        """The loss of the global batch: replicated ranks each hold their local batch's mean."""
        value = value.detach().float().clone()
        if self.context.enabled and not self.sharded:
            torch.distributed.all_reduce(value)
            value /= self.context.world_size
        return float(value)

    def _validation_due(self, end_of_epoch: bool) -> bool:
        t = self.config.training
        if not self.validation_images:
            return False
        if t.validate_every_steps and self.step % t.validate_every_steps == 0:
            return True
        epoch = self.step // self.steps_per_epoch
        return end_of_epoch and t.validate_every_epochs is not None and epoch % t.validate_every_epochs == 0

    def _run_validation(self) -> bool:
        """Validate on rank 0, keep the best model; True when early stopping says stop."""
        stop = torch.zeros(1)
        self.validated_at = self.step
        if self.context.is_main:
            report = self.validate()
            metric = report["accuracy_10fold_mean"]
            self._record({"step": self.step, "epoch": self.step / self.steps_per_epoch, "split": "validation",
                          "accuracy": metric, "accuracy_std": report["accuracy_10fold_std"], "auc": report["auc"],
                          "eer": report["eer"], "tar_at_far_1e-2": report["tar_at_far"]["1e-2"],
                          "tar_at_far_1e-3": report["tar_at_far"]["1e-3"]})
            log.info("step %d validation: accuracy %.4f ± %.4f, AUC %.4f", self.step, metric,
                     report["accuracy_10fold_std"], report["auc"])
            self.schedule.observe(metric)
            if metric > self.best_metric:
                self.best_metric, self.bad_validations = metric, 0
                self.save_model(self.run_dir / "best.pt")
            else:
                self.bad_validations += 1
            patience = self.config.training.early_stopping_patience
            stop[0] = float(patience is not None and self.bad_validations >= patience)
            self.last_validation = report
        if self.context.enabled:
            torch.distributed.broadcast(stop, 0)
        return bool(stop[0])

    def train(self, until_step: int | None = None) -> dict:
        """Train to the end of the schedule, or stop after `until_step` (as an interruption would:
        the schedule keeps its full length and `resume` continues from there)."""
        t = self.config.training
        last_step = min(self.total_steps, until_step or self.total_steps)
        if self.resume_path is not None:
            self.load_state(self.resume_path)
        handler = self._open_logs() if self.context.is_main else None
        self.last_validation, self.validated_at = None, None
        started, images_seen, stopped_early = time.perf_counter(), 0, False
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                   disable=not (self.progress and self.context.is_main))
        self.model.train()
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.step < last_step and not stopped_early:
                epoch, skip = divmod(self.step, self.steps_per_epoch)
                loader = torch.utils.data.DataLoader(self.samples, batch_sampler=list(self._batches(epoch, skip)),
                                                     num_workers=t.workers, pin_memory=self.device.type == "cuda",
                                                     persistent_workers=False)
                for images, labels in loader:
                    lr = self.schedule.apply(self.optimizer, self.step)
                    images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
                    if t.channels_last:
                        images = images.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                        enabled=self.amp_dtype is not None):
                        value = (self.loss(self.model(images), labels) if self.sharded else self.model(images, labels))
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scaler.scale(value).backward()
                    if t.clip_grad_norm:
                        self.scaler.unscale_(self.optimizer)
                        nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                                 t.clip_grad_norm)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.step += 1
                    batch_images = len(images) * self.context.world_size
                    images_seen += batch_images
                    window_images += batch_images
                    if self.step % t.log_every_steps == 0 or self.step == self.total_steps:
                        loss_value = self._global_loss(value)
                    if self.context.is_main and (self.step % t.log_every_steps == 0 or self.step == self.total_steps):
                        rate = window_images / max(time.perf_counter() - window_start, 1e-9)
                        window_start, window_images = time.perf_counter(), 0
                        self._record({"step": self.step, "epoch": self.step / self.steps_per_epoch, "split": "train",
                                      "loss": loss_value, "lr": lr, "images_per_second": rate})
                        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
                    bar.update(1)
                    if t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0:
                        self.save_checkpoint("last.pt")
                        self.save_checkpoint(f"step_{self.step:08d}.pt")
                    end_of_epoch = self.step % self.steps_per_epoch == 0
                    if self._validation_due(end_of_epoch) and self._run_validation():
                        stopped_early = True
                    if stopped_early or self.step >= last_step:
                        break
            bar.close()
            if self.validation_images and self.validated_at != self.step:
                self._run_validation()
            self.save_checkpoint("last.pt")
            self.save_model(self.run_dir / "model.pt")
            elapsed = time.perf_counter() - started
            summary = {"steps": self.step, "epochs": self.step / self.steps_per_epoch, "seconds": round(elapsed, 2),
                       "images_per_second": round(images_seen / max(elapsed, 1e-9), 2), "stopped_early": stopped_early,
                       "best_validation_accuracy": self.best_metric if self.validation_images else None,
                       "last_validation": self.last_validation, "identities": self.train_set.num_classes,
                       "train_images": len(self.train_set), "validation_images": len(self.validation_images),
                       "world_size": self.context.world_size, "device": str(self.device),
                       "model": str(self.run_dir / "model.pt"),
                       "best_model": str(self.run_dir / "best.pt") if self.validation_images else None}
            if self.context.is_main:
                (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
            return summary
        finally:
            if self.context.is_main:
                self.metrics_file.close()
                if self.tensorboard is not None:
                    self.tensorboard.close()
                logging.getLogger("faceid").removeHandler(handler)
            shutdown(self.context)
