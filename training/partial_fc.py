"""A model-parallel margin head (PartialFC-style, insightface): the class vectors are sharded over
ranks, so memory per GPU does not grow with the number of identities.

Each rank holds rows [start, end) of W. Embeddings and labels of the whole global batch are
gathered; each rank computes the logits of its classes, and a distributed softmax cross-entropy
combines the shards (max and sum of exponentials all-reduced). The result equals the
single-process CombinedMarginLoss on the global batch; here every class is used (sample rate 1);
`training.sampled_head` samples the classes of each shard (PartialFC with sample rate < 1).

Gradients: the loss of the global batch is the same on every rank; the gradient reaching each
rank's own embeddings is the sum over all class shards. DDP then averages the backbone gradients
over ranks, so the gathered-embedding gradient is multiplied by the world size to make the update
equal to single-process training on the global batch.
"""

from itertools import pairwise

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import check_inputs, cosine_logits
from faceid.losses.margin import CombinedMarginLoss


class GatherEmbeddings(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
        ctx.rank, ctx.world_size, ctx.rows = rank, world_size, local.shape[0]
        parts = [torch.empty_like(local) for _ in range(world_size)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        gradient = gradient.contiguous()
        dist.all_reduce(gradient)  # sum of every shard's contribution
        own = gradient[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]
        return own * ctx.world_size, None, None  # cancels DDP's averaging of backbone gradients


class DistributedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy over the global batch, with each rank holding some of the classes' logits:
    `has_target` marks the rows whose target is among this rank's columns, at `local_labels`."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, local_labels: torch.Tensor, has_target: torch.Tensor) -> torch.Tensor:
        maximum = logits.max(1, keepdim=True).values
        dist.all_reduce(maximum, op=dist.ReduceOp.MAX)
        exponentials = torch.exp(logits - maximum)
        total = exponentials.sum(1, keepdim=True)
        dist.all_reduce(total)
        probabilities = exponentials / total
        target = torch.zeros(len(local_labels), dtype=logits.dtype, device=logits.device)
        target[has_target] = probabilities[has_target, local_labels[has_target]]
        dist.all_reduce(target)
        ctx.save_for_backward(probabilities, local_labels, has_target)
        return -torch.log(target.clamp_min(1e-30)).mean()

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        probabilities, local_labels, has_target = ctx.saved_tensors
        grad = probabilities.clone()
        grad[has_target, local_labels[has_target]] -= 1
        return grad * gradient / len(local_labels), None, None


def gather_labels(labels: torch.Tensor, world_size: int) -> torch.Tensor:
    """The labels of the global batch, in rank order (every rank holds as many)."""
    parts = [torch.empty_like(labels) for _ in range(world_size)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def shard_bounds(classes: int, world_size: int) -> list[int]:
    """Rank r holds classes [bounds[r], bounds[r + 1])."""
    return [classes * r // world_size for r in range(world_size + 1)]


def gather_shards(shard: torch.Tensor, bounds: list[int]) -> torch.Tensor:
    """Every rank's rows of a sharded (C, d) tensor, whole; shards are padded to one size for all_gather."""
    rows = max(b - a for a, b in pairwise(bounds))
    padded = F.pad(shard.detach(), (0, 0, 0, rows - shard.shape[0]))
    parts = [torch.empty_like(padded) for _ in range(len(bounds) - 1)]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[: b - a] for part, (a, b) in zip(parts, pairwise(bounds), strict=True)])


class ShardedMarginHead(nn.Module):
    """CombinedMarginLoss with `weight` sharded over the ranks of the process group: this rank's rows
    of the class vectors plus the reference loss's MarginTransform (float32 math, autocast off)."""

    def __init__(self, reference: CombinedMarginLoss, rank: int, world_size: int):
        super().__init__()
        classes = reference.num_classes
        self.rank, self.world_size, self.num_classes = rank, world_size, classes
        self.embedding_dim = reference.embedding_dim
        self.bounds = shard_bounds(classes, world_size)
        self.start, self.end = self.bounds[rank], self.bounds[rank + 1]
        self.weight = nn.Parameter(reference.weight.detach()[self.start:self.end].clone())
        self.margin = reference.margin
        self.optimizer: torch.optim.Optimizer | None = None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_inputs(embeddings, labels, self.embedding_dim, self.num_classes)
        with torch.autocast(embeddings.device.type, enabled=False):
            gathered = GatherEmbeddings.apply(embeddings.float(), self.rank, self.world_size)
            all_labels = gather_labels(labels, self.world_size)
            cos = cosine_logits(gathered, self.weight)
            local = (all_labels >= self.start) & (all_labels < self.end)
            local_labels = torch.where(local, all_labels - self.start, torch.zeros_like(all_labels))
            return DistributedCrossEntropy.apply(self.margin(cos, local_labels, local), local_labels, local)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser whose state for this rank's rows (momentum, Adam moments) checkpoints carry."""
        self.optimizer = optimizer

    def _row_slots(self) -> dict:
        """This rank's optimiser state tensors shaped like its rows, by name (empty before a first step)."""
        slots = self.optimizer.state.get(self.weight, {}) if self.optimizer is not None else {}
        return {name: value for name, value in slots.items()
                if torch.is_tensor(value) and value.shape == self.weight.shape}

    def checkpoint_state(self) -> dict:
        """The whole class-vector matrix and its optimiser state, gathered from every rank (every rank must
        call this): the trainer's optimiser state dict is rank 0's, which holds only rank 0's rows."""
        rows = {name: gather_shards(value, self.bounds).cpu() for name, value in self._row_slots().items()}
        return {"weight": gather_shards(self.weight, self.bounds).cpu(), "row_state": rows}

    def load_checkpoint_state(self, state: dict) -> None:
        """Load this rank's rows; called after the optimiser's state dict, whose row state it replaces."""
        rows = slice(self.start, self.end)
        with torch.no_grad():
            self.weight.copy_(state["weight"][rows])
        if self.optimizer is not None and state.get("row_state"):
            slots = self.optimizer.state[self.weight]
            slots.update({name: value[rows].to(self.weight.device) for name, value in state["row_state"].items()})
