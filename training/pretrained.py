"""Fine-tuning from a pretrained model: `model.init` names a model-zoo entry or a faceid backbone checkpoint.

The checkpoint decides the architecture: `model.backbone`, `embedding_dim`, `input_size` and `options`
are taken from it, and a configuration that sets one of them to a different value is an error (never a
silent override). The training data go through the checkpoint's model input and must be crops of its
input size (aligned with its template, e.g. `dlib_150`); every checkpoint the run saves carries the
pretrained model's `preprocessing` and `alignment` extras, so the fine-tuned model embeds as it did.

Also here: holding the backbone fixed for the first epochs, keeping BatchNorm statistics frozen, and
initialising the class head from the class means of the pretrained embeddings.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from faceid.checkpoint import BackboneCheckpoint, read_backbone_checkpoint
from faceid.config import FaceidConfig, TrainingConfig
from faceid.data.images import read_rgb
from faceid.losses.lace import LACELoss
from faceid.losses.margin import CombinedMarginLoss, SphereFaceLoss
from faceid.losses.softmax import CocoLoss, NormFaceLoss
from faceid.losses.terms import CenterTerm, JointLoss
from faceid.model_input import ModelInput
from faceid.zoo import is_model_name, resolve

log = logging.getLogger("faceid.train")

# Extras of the pretrained checkpoint that every checkpoint of the fine-tuning run keeps.
CARRIED_EXTRAS = ("preprocessing", "alignment")

# Heads whose logits are (scaled functions of) cosines to class vectors: the attribute holding those vectors.
COSINE_HEADS = ((CombinedMarginLoss, "weight"), (NormFaceLoss, "weight"), (CocoLoss, "centers"),
                (SphereFaceLoss, "weight"), (LACELoss, "signatures"))


@dataclass(frozen=True)
class PretrainedModel:
    source: str  # as given: a zoo name or a path
    checkpoint: BackboneCheckpoint

    @property
    def architecture(self) -> dict:
        """backbone, embedding_dim, input_size, options: the ModelConfig fields the checkpoint fixes."""
        c = self.checkpoint
        return {"backbone": c.backbone, "embedding_dim": c.embedding_dim, "input_size": c.input_size,
                "options": c.options}

    @property
    def model_input(self) -> ModelInput:
        """The checkpoint's, alignment included."""
        return self.checkpoint.model_input

    @property
    def extra(self) -> dict:
        """What the run's checkpoints carry: the pretrained `preprocessing` and `alignment`, and `init`."""
        kept = {key: self.checkpoint.extra[key] for key in CARRIED_EXTRAS if key in self.checkpoint.extra}
        return {**kept, "init": self.source}

    def build(self) -> nn.Module:
        """A fresh backbone holding the pretrained weights."""
        return self.checkpoint.build()


def load_pretrained(source: str | Path) -> PretrainedModel:
    """Read `source` (a model-zoo name, pulled if needed, or a backbone checkpoint path)."""
    source = str(source)
    path = resolve(source) if is_model_name(source) and not Path(source).exists() else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"model.init {source!r} is neither a model-zoo name (`faceid models list`) "
                                f"nor an existing checkpoint file")
    if path.suffix == ".onnx":
        raise ValueError(f"model.init {source!r} is an ONNX model ({path}); fine-tuning needs a faceid PyTorch "
                         "backbone checkpoint (.pt)")
    try:
        return PretrainedModel(source, read_backbone_checkpoint(path))
    except ValueError as error:
        raise ValueError(f"model.init {source!r}: {error}") from None


def configure(config: FaceidConfig, pretrained: PretrainedModel) -> FaceidConfig:
    """A copy of `config` whose model fields are the checkpoint's. A field the configuration sets
    explicitly to another value is a ValueError naming both values."""
    model = config.model
    conflicts = [f"model.{key} is {getattr(model, key)!r} but {pretrained.source} has {value!r}"
                 for key, value in pretrained.architecture.items()
                 if key in model.model_fields_set and getattr(model, key) != value]
    if conflicts:
        raise ValueError(f"model.init {pretrained.source!r} fixes the architecture: " + "; ".join(conflicts)
                         + ". Remove these keys (the checkpoint supplies them) or set them to its values.")
    configured = config.model_copy(deep=True)
    configured.model = model.model_copy(update=pretrained.architecture)
    return configured


def check_data(pretrained: PretrainedModel, train_set, validation_images) -> None:
    """The first crop of the training set and of the validation images must have the checkpoint's size."""
    check_crop_size(train_set.load(0)[0], pretrained, "the training data")
    if validation_images:
        check_crop_size(read_rgb(validation_images[0].path), pretrained, "the validation data")


def check_crop_size(crop: np.ndarray, pretrained: PretrainedModel, what: str) -> None:
    """Crops of another size than the checkpoint's input would be resized silently: refuse them."""
    size, template = pretrained.model_input.input_size, pretrained.model_input.alignment
    if crop.shape[:2] != (size, size):
        raise ValueError(f"{what} holds {crop.shape[1]}x{crop.shape[0]} crops, but model.init {pretrained.source!r} "
                         f"takes {size}x{size} crops aligned with {template}; align the raw images for it "
                         f"(faceid align SRC DST --template {template} --size {size}) and train on those")


@torch.no_grad()
def embed_dataset(backbone: nn.Module, dataset, model_input: ModelInput, device: torch.device,
                  batch_size: int = 64) -> torch.Tensor:
    """Raw (unnormalised) embeddings of every sample of `dataset`, in order, in eval mode, unaugmented."""
    was_training = backbone.training
    backbone.eval()
    outputs = []
    try:
        for start in range(0, len(dataset), batch_size):
            crops = [dataset.load(index)[0] for index in range(start, min(start + batch_size, len(dataset)))]
            outputs.append(backbone(torch.from_numpy(model_input.apply(crops)).to(device)).float().cpu())
    finally:
        backbone.train(was_training)
    return torch.cat(outputs)


def class_means(embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int,
                normalise: bool) -> torch.Tensor:
    """(C, d) per-class means of `embeddings` (of the unit embeddings, renormalised, with `normalise`)."""
    vectors = F.normalize(embeddings, dim=1) if normalise else embeddings
    sums = torch.zeros(num_classes, vectors.shape[1]).index_add_(0, labels, vectors)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1)
    means = sums / counts[:, None]
    return F.normalize(means, dim=1) if normalise else means


def head_vectors(loss: nn.Module) -> list[tuple[nn.Parameter, bool]]:
    """The class vectors of `loss` that class means initialise, each with whether it lives on the unit
    sphere (cosine heads, LACE signatures) or in raw embedding space (center-loss centres)."""
    if isinstance(loss, JointLoss):
        return head_vectors(loss.main) + ([(loss.aux.centers, False)] if isinstance(loss.aux, CenterTerm) else [])
    return [(getattr(loss, name), True) for kind, name in COSINE_HEADS if isinstance(loss, kind)][:1]


def init_head(loss: nn.Module, embeddings: torch.Tensor, labels, loss_name: str) -> None:
    """Set the class vectors of `loss` to the class means of the pretrained `embeddings`, where it has
    any; otherwise leave its random initialisation and say so."""
    targets = head_vectors(loss)
    if not targets:
        log.info("model.init_head class_means does not apply to loss %s (no class vectors compared by cosine); "
                 "its head starts random", loss_name)
        return
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    with torch.no_grad():
        for parameter, normalise in targets:
            means = class_means(embeddings, labels, parameter.shape[0], normalise)
            parameter.copy_(means.to(parameter.device, parameter.dtype))
    log.info("model.init_head: %s class vectors set to the class means of the pretrained embeddings", loss_name)


class BackboneFreezer:
    """`training.freeze_backbone_epochs`: no gradients reach the backbone (so it does not change) during
    the first N epochs; `training.freeze_bn_stats`: BatchNorm layers run in eval mode (running statistics
    used and left unchanged) throughout. A frozen backbone's BatchNorm layers are held in eval mode too.
    A loss without parameters (triplet, contrastive) has nothing to train on a frozen backbone: no freezing then.
    The mode is enforced by a pre-forward hook, so a `.train()` call (validation ends with one) cannot undo it."""

    def __init__(self, backbone: nn.Module, loss: nn.Module, training: TrainingConfig, distributed: bool = False):
        freeze_epochs, self.freeze_bn_stats = training.freeze_backbone_epochs, training.freeze_bn_stats
        if freeze_epochs and distributed:
            raise ValueError("training.freeze_backbone_epochs is not supported with distributed training yet")
        if freeze_epochs and not any(p.requires_grad for p in loss.parameters()):
            log.info("training.freeze_backbone_epochs does not apply: the loss has no parameters to train while the "
                     "backbone is frozen, so the backbone trains from the first epoch")
            freeze_epochs = 0
        self.freeze_epochs = freeze_epochs
        self.trainable = [p for p in backbone.parameters() if p.requires_grad]
        self.frozen = False
        norms = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
        if self.freeze_bn_stats and not norms:
            log.info("training.freeze_bn_stats: the backbone has no BatchNorm layers; nothing to freeze")
        for module in norms:
            module.register_forward_pre_hook(self._hold_statistics)

    def _hold_statistics(self, module: nn.Module, inputs) -> None:
        if self.freeze_bn_stats or self.frozen:
            module.train(False)

    def set_epoch(self, epoch: int) -> None:
        frozen = epoch < self.freeze_epochs
        if frozen != self.frozen:
            log.info("epoch %d: backbone %s", epoch, "frozen" if frozen else "trained")
        self.frozen = frozen
        for parameter in self.trainable:
            parameter.requires_grad_(not frozen)
