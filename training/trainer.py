"""The training loop: any backbone with any loss from `faceid.losses`, on one CPU or many GPUs.

A run directory holds `config.yaml`, `train.log`, `metrics.csv` (see `training.run_log`),
`checkpoints/last.pt` (the whole training state: model, loss, optimiser, schedule, scaler, RNG
states, position), `best.pt` and `model.pt` (backbone checkpoints any embedder loads; see
`training.checkpoint`), and `summary.json`.
"""

import logging
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from faceid.backbones import build_backbone
from faceid.config import FaceidConfig
from faceid.data.dataset import FolderDataset, RecordIODataset, identity_images, split_identities
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.data.protocols import build_pair_protocol
from faceid.device import resolve_device
from faceid.evaluation.verification import verification_report
from faceid.losses import build_loss
from faceid.model_input import ModelInput
from faceid.torch_embedder import TorchEmbedder
from faceid.training import checkpoint, pretrained
from faceid.training.augmentation import Augmentation
from faceid.training.distributed import DistributedContext, init_distributed, shutdown
from faceid.training.loader import build_loader
from faceid.training.run_log import RunLog
from faceid.training.sampled_head import build_head
from faceid.training.samplers import auto_sampler, build_sampler
from faceid.training.schedule import LearningRateSchedule

log = logging.getLogger("faceid.train")


class TrainingSamples(torch.utils.data.Dataset):
    """(index, augmentation seed) -> (normalised CHW float tensor, label)."""

    def __init__(self, dataset, augmentation: Augmentation, model_input: ModelInput):
        self.dataset, self.augmentation, self.model_input = dataset, augmentation, model_input

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, seed = item
        crop, label = self.dataset.load(index)
        crop = self.augmentation(crop, seed)
        return torch.from_numpy(self.model_input.apply([crop])[0]), label


class TrainModule(nn.Module):
    """Backbone and loss as one module, so DDP sees (and averages) both."""

    def __init__(self, backbone: nn.Module, loss: nn.Module):
        super().__init__()
        self.backbone, self.loss = backbone, loss

    def forward(self, images, labels):
        return self.loss(self.backbone(images), labels)


def _datasets(config: FaceidConfig):
    data = config.data
    if data.format == "recordio":
        if not data.rec:
            raise ValueError("data.rec must name train.rec when data.format is recordio")
        train = RecordIODataset(data.rec)
        validation = list_identity_folder(data.validation_root) if data.validation_root else []
        return train, validation
    if not (data.cache or data.root):
        raise ValueError("data.root must name an identity-folder tree of aligned faces (or data.cache a crop cache)")
    images, cache = identity_images(data.cache or data.root)
    if data.validation_root:
        return FolderDataset(images, cache=cache), list_identity_folder(data.validation_root)
    train_images, validation = split_identities(images, data.validation_fraction, config.seed)
    return FolderDataset(train_images, cache=cache), validation


class Trainer:
    """One training run of `config`: data, model, loss, optimiser and schedule are built on
    construction (joining the torchrun process group when there is one); `train()` runs the loop,
    resuming from `resume` (a training checkpoint, or "auto" for the run's `last.pt`) when given,
    and returns the summary it writes to `summary.json`."""

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
        config = self.config
        self.train_set, self.validation_images = _datasets(config)
        self.model_input = ModelInput(input_size=config.model.input_size)
        self._build_model()
        self._build_batches()
        self._build_optimizer()
        self.step, self.best_metric, self.bad_validations = 0, -1.0, 0
        if self.validation_images:
            self.validation_protocol = build_pair_protocol(self.validation_images, config.evaluation.folds,
                                                           config.evaluation.pairs_per_fold, config.seed)

    def _build_model(self) -> None:
        """The backbone (or `model.init`'s: training.pretrained), the loss (sharded: `model_parallel_head`;
        sampled: `sample_rate`) and what DDP wraps."""
        self.pretrained = pretrained.load_pretrained(self.config.model.init) if self.config.model.init else None
        if self.pretrained:
            self.config = pretrained.configure(self.config, self.pretrained)
            self.model_input = self.pretrained.model_input
            pretrained.check_data(self.pretrained, self.train_set, self.validation_images)
        config, t = self.config, self.config.training
        self.backbone = (self.pretrained.build() if self.pretrained else
                         build_backbone(config.model.backbone, config.model.embedding_dim, config.model.input_size,
                                        **config.model.options)).to(self.device)
        if self.device.type == "cuda" and self.context.enabled:
            self.backbone = nn.SyncBatchNorm.convert_sync_batchnorm(self.backbone)
        if t.channels_last:
            self.backbone = self.backbone.to(memory_format=torch.channels_last)
        loss = build_loss(config.loss.name, config.model.embedding_dim, self.train_set.num_classes,
                          **config.loss.params)
        if self.pretrained and config.model.init_head == "class_means" and self.resume_path is None:
            embeddings = pretrained.embed_dataset(self.backbone, self.train_set, self.model_input, self.device)
            pretrained.init_head(loss, embeddings, self.train_set.labels, config.loss.name)
        self.sharded = t.model_parallel_head and self.context.enabled
        self.loss = build_head(loss, config.loss.name, t, self.context, config.seed).to(self.device)
        self.freezer = pretrained.BackboneFreezer(self.backbone, self.loss, t, self.context.enabled)
        if not self.context.enabled:
            self.model = TrainModule(self.backbone, self.loss)
        else:
            wrapped = self.backbone if self.sharded else TrainModule(self.backbone, self.loss)
            self.model = DistributedDataParallel(wrapped)
        if t.compile:
            self.model = torch.compile(self.model)

    def _build_batches(self) -> None:
        config, t = self.config, self.config.training
        name = auto_sampler(self.loss) if t.sampler == "auto" else t.sampler
        options = {"images_per_identity": t.images_per_identity} if name == "pk" else {}
        self.sampler = build_sampler(name, self.train_set.labels, t.batch_size, config.seed, **options)
        self.steps_per_epoch = len(self.sampler.batches(0))
        self.total_steps = min(t.max_steps or 10**12, t.epochs * self.steps_per_epoch)
        self.samples = TrainingSamples(self.train_set, Augmentation(t.augmentation), self.model_input)

    def _build_optimizer(self) -> None:
        """One parameter group for the backbone (`backbone_lr`), one for the loss (its own lr and weight decay)."""
        t = self.config.training
        loss_lr = t.loss_lr or t.lr
        loss_decay = t.weight_decay if t.loss_weight_decay is None else t.loss_weight_decay
        groups = [{"params": [p for p in self.backbone.parameters() if p.requires_grad], "lr": t.backbone_lr or t.lr,
                   "weight_decay": t.weight_decay},
                  {"params": [p for p in self.loss.parameters() if p.requires_grad], "lr": loss_lr,
                   "weight_decay": loss_decay}]
        groups = [g for g in groups if g["params"]]
        if t.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, momentum=t.momentum)
        else:
            self.optimizer = torch.optim.AdamW(groups)
        if hasattr(self.loss, "attach"):  # a sampled or sharded head keeps its rows' optimiser state itself
            self.loss.attach(self.optimizer)
        self.schedule = LearningRateSchedule(t.schedule, self.total_steps, self.steps_per_epoch,
                                             [g["lr"] for g in groups])
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.amp)
        self.amp_dtype = amp if self.device.type == "cuda" else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    # ----- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, name: str = "last.pt") -> None:
        state = checkpoint.training_state(self)  # every rank joins the gather of a sharded head
        if self.context.is_main:
            checkpoint.save_training_state(state, self.run_dir / "checkpoints" / name)

    def save_model(self, path: Path) -> None:
        if self.context.is_main:
            checkpoint.save_model(self, path)

    # ----- validation --------------------------------------------------------------------------
    def validate(self) -> dict:
        """Verification on the validation pairs, through an embedder over the live backbone."""
        protocol, model = self.validation_protocol, self.config.model
        embedder = TorchEmbedder(self.backbone, model.backbone, model.embedding_dim, self.model_input, self.device)
        try:
            embeddings = np.concatenate([embedder.embed([read_rgb(path) for path in protocol.paths[start:start + 64]])
                                         for start in range(0, len(protocol.paths), 64)])
        finally:
            self.backbone.train()
        scores = (embeddings[protocol.first] * embeddings[protocol.second]).sum(1)
        return verification_report(scores, protocol.is_same, folds=protocol.fold, seed=self.config.seed)

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
            self.run_log.record({"step": self.step, "epoch": self.step / self.steps_per_epoch, "split": "validation",
                                 "accuracy": metric, "accuracy_std": report["accuracy_10fold_std"],
                                 "auc": report["auc"], "eer": report["eer"],
                                 "tar_at_far_1e-2": report["tar_at_far"]["1e-2"],
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

    # ----- the loop ----------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        """The rest of the current epoch: this rank's slice of each global batch, with per-sample
        augmentation seeds from (seed, epoch, position), so a resume sees the same samples."""
        t = self.config.training
        epoch, skip = divmod(self.step, self.steps_per_epoch)
        local = self.context.local_slice(t.batch_size)
        batches = []
        for position, batch in enumerate(self.sampler.batches(epoch)[skip:], start=skip):
            seeds = [hash((self.config.seed, epoch, position, k)) % 2**31 for k in range(len(batch))]
            batches.append([(int(index), seed) for index, seed in list(zip(batch, seeds, strict=True))[local]])
        return build_loader(self.samples, batches, t.workers, self.device)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """One optimiser step on this rank's part of a batch: (its loss, the learning rate used)."""
        t = self.config.training
        lr = self.schedule.apply(self.optimizer, self.step)
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        if t.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        amp = self.amp_dtype is not None
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=amp):
            value = self.loss(self.model(images), labels) if self.sharded else self.model(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(value).backward()
        if t.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], t.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return value, lr

    def _global_loss(self, value: torch.Tensor) -> float:
        """The loss of the global batch: replicated ranks each hold their local batch's mean."""
        value = value.detach().float().clone()
        if self.context.enabled and not self.sharded:
            torch.distributed.all_reduce(value)
            value /= self.context.world_size
        return float(value)

    def _after_step(self, value: torch.Tensor, lr: float) -> bool:
        """Log, checkpoint and validate as configured after a step; True when early stopping says stop."""
        t = self.config.training
        if self.step % t.log_every_steps == 0 or self.step == self.total_steps:
            loss = self._global_loss(value)
            if not math.isfinite(loss):
                raise ValueError(f"training diverged: the loss is {loss} at step {self.step}; lower training.lr, "
                                 "set training.clip_grad_norm, or resume from an earlier checkpoint")
            self.run_log.train_row(self.step, self.step / self.steps_per_epoch, loss, lr)
        if t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0:
            self.save_checkpoint("last.pt")
            self.save_checkpoint(f"step_{self.step:08d}.pt")
        return self._validation_due(self.step % self.steps_per_epoch == 0) and self._run_validation()

    def train(self, until_step: int | None = None) -> dict:
        """Train to the end of the schedule, or stop after `until_step` (as an interruption would:
        the schedule keeps its full length and `resume` continues from there)."""
        last_step = min(self.total_steps, until_step or self.total_steps)
        if self.resume_path is not None:
            checkpoint.restore_training_state(self, self.resume_path)
        self.run_log = RunLog(self.run_dir, self.config, self.resume_path is not None, self.total_steps, self.step,
                              writes=self.context.is_main, progress=self.progress)
        self.last_validation, self.validated_at, stopped_early = None, None, False
        self.model.train()
        try:
            while self.step < last_step and not stopped_early:
                self.freezer.set_epoch(self.step // self.steps_per_epoch)
                for images, labels in self._loader():
                    value, lr = self._step(images, labels)
                    self.run_log.advance(len(images) * self.context.world_size)
                    stopped_early = self._after_step(value, lr)
                    if stopped_early or self.step >= last_step:
                        break
            if self.validation_images and self.validated_at != self.step:
                self._run_validation()
            self.save_checkpoint("last.pt")
            self.save_model(self.run_dir / "model.pt")
            summary = self._summary(stopped_early)
            self.run_log.write_summary(summary)
            self.context.barrier()  # the ranks leave together: none tears its process group down under another
            return summary
        finally:
            self.run_log.close()
            shutdown(self.context)

    def _summary(self, stopped_early: bool) -> dict:
        elapsed, validated = self.run_log.elapsed(), bool(self.validation_images)
        return {"steps": self.step, "epochs": self.step / self.steps_per_epoch, "seconds": round(elapsed, 2),
                "images_per_second": round(self.run_log.images_seen / max(elapsed, 1e-9), 2),
                "stopped_early": stopped_early, "best_validation_accuracy": self.best_metric if validated else None,
                "last_validation": self.last_validation, "identities": self.train_set.num_classes,
                "train_images": len(self.train_set), "validation_images": len(self.validation_images),
                "world_size": self.context.world_size, "device": str(self.device),
                "model": str(self.run_dir / "model.pt"),
                "best_model": str(self.run_dir / "best.pt") if validated else None}
