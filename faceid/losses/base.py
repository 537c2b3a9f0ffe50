"""What every face loss shares: input validation, float32 margin math, and the classification head."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def check_inputs(embeddings: torch.Tensor, labels: torch.Tensor, embedding_dim: int,
                 num_classes: int | None) -> torch.Tensor:
    """Validate a batch; returns labels as int64. Raises ValueError naming the input and the value."""
    if not isinstance(embeddings, torch.Tensor) or not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a floating-point tensor, got {type(embeddings).__name__} "
                         f"{getattr(embeddings, 'dtype', '')}")
    if embeddings.dim() != 2 or embeddings.shape[1] != embedding_dim or embeddings.shape[0] == 0:
        raise ValueError(f"embeddings must have shape (B>=1, {embedding_dim}), got {tuple(embeddings.shape)}")
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor, "
                         f"got {type(labels).__name__} {getattr(labels, 'dtype', '')}")
    if labels.shape != (embeddings.shape[0],):
        raise ValueError(f"labels must have shape ({embeddings.shape[0]},) to match the embeddings, "
                         f"got {tuple(labels.shape)}")
    if torch.compiler.is_compiling():
        # the checks below read values back to the host (a graph break and a device sync); under
        # torch.compile the trainer checks the loss at each logged step instead
        return labels.long()
    finite = torch.isfinite(embeddings)
    if not bool(finite.all()):
        row = int((~finite).any(1).nonzero()[0])
        raise ValueError(f"embeddings contain non-finite values: row {row} holds "
                         f"{embeddings[row][~finite[row]][0].item()}")
    if num_classes is not None:
        outside = (labels < 0) | (labels >= num_classes)
        if bool(outside.any()):
            raise ValueError(f"labels must lie in [0, {num_classes}), got {labels[outside][0].item()}")
    return labels.long()


class FaceLoss(nn.Module):
    """Base class: `loss(embeddings, labels)` validates, then runs `compute` in float32 or float64.

    Under autocast, or with float16/bfloat16 inputs, the loss math runs in float32.
    """

    def __init__(self, embedding_dim: int, num_classes: int | None = None):
        super().__init__()
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_inputs(embeddings, labels, self.embedding_dim, self.num_classes)
        if embeddings.dtype not in (torch.float32, torch.float64):
            embeddings = embeddings.float()
        with torch.autocast(embeddings.device.type, enabled=False):
            return self.compute(embeddings, labels)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}"


class ClassificationLoss(FaceLoss):
    """Cross-entropy over per-class logits. Subclasses define `logits` (test-time scores) and may
    override `training_logits` to add a margin to the target class."""

    def __init__(self, embedding_dim: int, num_classes: int):
        if num_classes is None:
            raise ValueError("classification losses need num_classes")
        super().__init__(embedding_dim, num_classes)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def training_logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.logits(embeddings)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.training_logits(embeddings, labels), labels)


def class_weight(num_classes: int, embedding_dim: int) -> nn.Parameter:
    """Class vectors (C, d), initialised like nn.Linear."""
    weight = torch.empty(num_classes, embedding_dim)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return nn.Parameter(weight)


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """cos θ_j = x̂ · ŵ_j for every class: (B, C)."""
    return F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`logits` with the target class's entry of each row replaced by `target` (B,)."""
    one_hot = F.one_hot(labels, logits.shape[1]).to(torch.bool)
    return torch.where(one_hot, target.unsqueeze(1).to(logits.dtype), logits)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for all pairs as ‖a‖² + ‖b‖² − 2a·b (one matmul), clamped at 0 against rounding."""
    return (a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2 * a @ b.T).clamp_min(0)
