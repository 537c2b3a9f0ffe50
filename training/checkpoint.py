"""The training checkpoint (`checkpoints/*.pt`: the whole state of a run, so a resume continues
exactly) and the backbone checkpoint (`model.pt`, `best.pt`: what any embedder loads). Both are
written atomically: a reader sees the old file or the new one, never half of one."""

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from faceid.checkpoint import save_backbone_checkpoint
from faceid.config import FaceidConfig
from faceid.files import atomic_write

TRAINING_FORMAT = "faceid-training-1"


def config_hash(config: FaceidConfig) -> str:
    return hashlib.sha256(json.dumps(config.model_dump(), sort_keys=True).encode()).hexdigest()[:12]


def _rng_states() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


def training_state(trainer) -> dict:
    """The state of `trainer` (a `training.trainer.Trainer`); a head with `checkpoint_state` (sharded or
    sampled, `training.partial_fc`, `training.sampled_head`) gathers its whole state, so every rank must call this."""
    loss = trainer.loss
    loss_state = loss.checkpoint_state() if hasattr(loss, "checkpoint_state") else loss.state_dict()
    return {"format": TRAINING_FORMAT, "step": trainer.step, "config": trainer.config.model_dump(),
            "backbone": trainer.backbone.state_dict(), "loss": loss_state,
            "optimizer": trainer.optimizer.state_dict(), "schedule": trainer.schedule.state_dict(),
            "scaler": trainer.scaler.state_dict(), "best_metric": trainer.best_metric,
            "bad_validations": trainer.bad_validations, "num_classes": trainer.train_set.num_classes,
            "rng": _rng_states()}


def restore_training_state(trainer, path: Path) -> None:
    """Load the training checkpoint at `path` into `trainer`, RNG states included."""
    state = torch.load(path, map_location=trainer.device, weights_only=False)
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{path} is not a faceid training checkpoint (format {TRAINING_FORMAT})")
    trainer.backbone.load_state_dict(state["backbone"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    loss = trainer.loss  # after the optimiser: a sharded head replaces rank 0's row state with its own
    if hasattr(loss, "load_checkpoint_state"):
        loss.load_checkpoint_state(state["loss"])
    else:
        loss.load_state_dict(state["loss"])
    trainer.schedule.load_state_dict(state["schedule"])
    trainer.scaler.load_state_dict(state["scaler"])
    trainer.step, trainer.best_metric = state["step"], state["best_metric"]
    trainer.bad_validations = state["bad_validations"]
    _restore_rng(state["rng"])


def save_training_state(state: dict, path: Path) -> None:
    with atomic_write(path) as temporary:
        torch.save(state, temporary)


def save_model(trainer, path: Path) -> None:
    """The backbone of `trainer` as a checkpoint `TorchEmbedder.from_checkpoint` reads back."""
    model = trainer.config.model
    with atomic_write(path) as temporary:
        save_backbone_checkpoint(temporary, trainer.backbone, model.backbone, model.embedding_dim, model.input_size,
                                 extra={"loss": trainer.config.loss.name, "config_hash": config_hash(trainer.config),
                                        "step": trainer.step, "backbone_options": model.options,
                                        **(trainer.pretrained.extra if trainer.pretrained else {})})
