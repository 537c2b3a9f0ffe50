"""Distributed data parallel through `torchrun`: gloo on CPU, nccl on CUDA.

`torchrun --nproc_per_node N -m faceid.cli train --config ...` sets RANK, WORLD_SIZE and
LOCAL_RANK; without them training runs as a single process. Rank 0 alone logs, validates and
writes checkpoints.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def local_slice(self, global_batch_size: int) -> slice:
        if global_batch_size % self.world_size:
            raise ValueError(f"batch_size {global_batch_size} must be divisible by the {self.world_size} ranks")
        local = global_batch_size // self.world_size
        return slice(self.rank * local, (self.rank + 1) * local)


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes, or return the single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank)


def shutdown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
