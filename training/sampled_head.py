"""Sampled class centres (PartialFC with sample rate < 1, insightface): each step the margin head uses
the positive classes of the batch plus uniformly drawn negatives, so logits, gradients and optimiser
updates touch only a share of the class vectors.

Sampling. Each shard of the classes (the whole matrix in one process; rows [start, end) of rank r with
`model_parallel_head`) keeps every class that labels a sample of the global batch and fills up with
negatives drawn uniformly without replacement from its other classes, to int(rate x shard size) rows in
all (or just the positives when there are more). The sampled rows are kept in class order, so at
rate 1 every class is used in order and the loss is exactly the unsampled head's.

RNG. Positives come from the labels of the global batch, identical on every rank. Negatives come from a
torch.Generator on the weight's device seeded per step with hash((config.seed, rank, draw)): `draw`
counts the head's forward passes (saved in checkpoints), so each rank draws from its own stream, a run
is reproducible, and a resumed run draws what the uninterrupted run would have.

Optimiser state. The class vectors are a buffer (`weight`), not a parameter; each forward gathers the
sampled rows into a fresh small parameter `active` and puts it in the trainer's optimiser in place of
the previous one (`attach`), with those rows' optimiser state (SGD momentum; AdamW moments). After
`optimizer.step()` a step hook scatters the rows and their state back. So the trainer's optimiser,
learning-rate schedule, weight decay, gradient clipping and AMP scaler apply to the sampled rows only,
and an unsampled row's weight and momentum do not change (insightface PartialFC v1 did the same).
Optimiser state that is not per row (AdamW's step count) is shared by all rows, as in lazy Adam.

Checkpoints. `checkpoint_state()` holds the whole matrix, the per-row optimiser state and the draw
counter (gathered from every rank when sharded); the trainer's optimiser state holds only the empty
placeholder left between steps, so a resume continues exactly.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.config import TrainingConfig
from faceid.losses.base import check_inputs, cosine_logits
from faceid.losses.margin import CombinedMarginLoss
from faceid.training.distributed import DistributedContext
from faceid.training.partial_fc import (
    DistributedCrossEntropy,
    GatherEmbeddings,
    ShardedMarginHead,
    gather_labels,
    gather_shards,
    shard_bounds,
)


class SampledMarginHead(nn.Module):
    """CombinedMarginLoss over sampled class centres, in one process (`world_size` 1) or sharded over
    the ranks of the process group; see the module docstring."""

    def __init__(self, reference: CombinedMarginLoss, sample_rate: float, seed: int, rank: int = 0,
                 world_size: int = 1):
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        self.num_classes, self.embedding_dim = reference.num_classes, reference.embedding_dim
        self.sample_rate, self.seed, self.rank, self.world_size = float(sample_rate), seed, rank, world_size
        self.bounds = shard_bounds(self.num_classes, world_size)
        self.start, self.end = self.bounds[rank], self.bounds[rank + 1]
        self.register_buffer("weight", reference.weight.detach()[self.start:self.end].clone())
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.margin = reference.margin
        self.active = nn.Parameter(self.weight[:0].clone())  # the sampled rows during a step, else empty
        self.index: torch.Tensor | None = None  # rows of `weight` in `active`, None when committed
        self.row_state: dict[str, torch.Tensor] = {}  # optimiser state per row, (rows, d) each
        self.shared_state: dict = {}  # optimiser state that is not per row
        self.optimizer: torch.optim.Optimizer | None = None

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Let `optimizer`, whose parameter groups hold `self.active`, update the sampled rows."""
        self._position(optimizer)
        self.optimizer = optimizer
        optimizer.register_step_post_hook(lambda *_: self.commit())

    def _position(self, optimizer: torch.optim.Optimizer) -> tuple[list, int]:
        for group in optimizer.param_groups:
            for position, parameter in enumerate(group["params"]):
                if parameter is self.active:
                    return group["params"], position
        raise ValueError("the optimizer does not hold the sampled head's parameter (head.active)")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_inputs(embeddings, labels, self.embedding_dim, self.num_classes)
        self.commit()  # rows of a step the AMP scaler skipped go back unchanged
        if embeddings.dtype not in (torch.float32, torch.float64):
            embeddings = embeddings.float()
        with torch.autocast(embeddings.device.type, enabled=False):
            if self.world_size > 1:
                embeddings = GatherEmbeddings.apply(embeddings, self.rank, self.world_size)
                labels = gather_labels(labels, self.world_size)
            has_target = (labels >= self.start) & (labels < self.end)
            self._install(self.sample(labels[has_target] - self.start))
            local_labels = torch.where(has_target, torch.searchsorted(self.index, labels - self.start), 0)
            logits = self.margin(cosine_logits(embeddings, self.active), local_labels, has_target)
            if self.world_size > 1:
                return DistributedCrossEntropy.apply(logits, local_labels, has_target)
            return F.cross_entropy(logits, local_labels)

    def sample(self, positives: torch.Tensor) -> torch.Tensor:
        """The sorted rows of this shard to use: `positives` (rows, repeats allowed) and random negatives."""
        rows, device = self.end - self.start, self.weight.device
        positives = torch.unique(positives)
        count = max(int(self.sample_rate * rows), len(positives))
        draw = int(self.draws)
        self.draws += 1
        if count >= rows:
            return torch.arange(rows, device=device)
        generator = torch.Generator(device=device).manual_seed(hash((self.seed, self.rank, draw)) % 2**63)
        score = torch.rand(rows, generator=generator, device=device)
        score[positives] = 2.0  # above every random score: positives first
        return score.topk(count).indices.sort().values

    def _install(self, index: torch.Tensor) -> None:
        """`active` becomes the rows `index` of `weight`, in the optimiser with their state."""
        active = nn.Parameter(self.weight[index])
        if self.optimizer is not None:
            params, position = self._position(self.optimizer)
            params[position] = active
            if self.row_state:
                self.optimizer.state[active] = {**{k: v[index] for k, v in self.row_state.items()},
                                                **{k: v.clone() for k, v in self.shared_state.items()}}
        self.active, self.index = active, index

    @torch.no_grad()
    def commit(self) -> None:
        """Scatter the sampled rows and their optimiser state back; `active` becomes empty again."""
        if self.index is None:
            return
        self.weight[self.index] = self.active
        placeholder = nn.Parameter(self.weight[:0].clone())
        if self.optimizer is not None:
            for key, value in self.optimizer.state.pop(self.active, {}).items():
                if torch.is_tensor(value) and value.shape == self.active.shape:
                    self.row_state.setdefault(key, torch.zeros_like(self.weight))[self.index] = value
                else:
                    self.shared_state[key] = value
            params, position = self._position(self.optimizer)
            params[position] = placeholder
        self.active, self.index = placeholder, None

    def checkpoint_state(self) -> dict:
        """Class vectors, per-row optimiser state and draw counter, whole (every rank must call this)."""
        self.commit()
        whole = (lambda shard: gather_shards(shard, self.bounds)) if self.world_size > 1 else torch.clone
        return {"weight": whole(self.weight).cpu(), "row_state": {k: whole(v).cpu() for k, v in self.row_state.items()},
                "shared_state": self.shared_state, "draws": self.draws.cpu()}

    def load_checkpoint_state(self, state: dict) -> None:
        self.commit()
        rows = slice(self.start, self.end)
        with torch.no_grad():
            self.weight.copy_(state["weight"][rows])
            self.draws.copy_(state["draws"])
        self.row_state = {k: v[rows].to(self.weight.device) for k, v in state["row_state"].items()}
        self.shared_state = dict(state["shared_state"])

    def extra_repr(self) -> str:
        return (f"classes={self.start}..{self.end} of {self.num_classes}, sample_rate={self.sample_rate}, "
                f"rank={self.rank}/{self.world_size}")


def build_head(loss: nn.Module, loss_name: str, training: TrainingConfig, context: DistributedContext,
               seed: int) -> nn.Module:
    """The loss as the trainer trains it: as built, sharded over the ranks (`training.model_parallel_head`),
    or over sampled class centres (`training.sample_rate` < 1; sharded when there are several ranks)."""
    sharded, sampled = training.model_parallel_head and context.enabled, training.sample_rate < 1
    if (sharded or sampled) and not isinstance(loss, CombinedMarginLoss):
        option = f"training.sample_rate={training.sample_rate}" if sampled else "model_parallel_head"
        raise ValueError(f"{option} needs a margin head (arcface, cosface, amsoftmax, combined), got {loss_name!r}")
    if sampled and context.enabled and not sharded:
        raise ValueError(f"training.sample_rate={training.sample_rate} on {context.world_size} ranks needs "
                         "training.model_parallel_head: true (each rank samples its shard of the classes)")
    if sampled:
        return SampledMarginHead(loss, training.sample_rate, seed, context.rank, context.world_size)
    return ShardedMarginHead(loss, context.rank, context.world_size) if sharded else loss
