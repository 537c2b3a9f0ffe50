"""The model-parallel margin head (2 ranks over gloo) against the single-process loss under bf16
autocast: the margin math runs in float32 in both, so values and gradients agree to float32 precision."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faceid.losses import build_loss
from faceid.training.partial_fc import ShardedMarginHead

BATCH, DIM, CLASSES, WORLD = 8, 12, 11, 2  # 11 classes: unequal shards (5 and 6)


def _inputs(dtype: torch.dtype):
    torch.manual_seed(0)
    reference = build_loss("arcface", DIM, CLASSES, s=16.0, m=0.5)
    embeddings = torch.randn(BATCH, DIM).to(dtype)
    labels = torch.tensor([0, 4, 5, 10, 3, 6, 9, 5])  # targets in both shards
    return reference, embeddings, labels


def _sharded(rank: int, store: str, out: str, dtype: torch.dtype) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        reference, embeddings, labels = _inputs(dtype)
        head = ShardedMarginHead(reference, rank, WORLD)
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        mine = embeddings[rows].clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = head(mine, labels[rows])
        value.backward()
        # GatherEmbeddings scales the embedding gradient by the world size, for DDP to average back
        torch.save({"value": value.detach(), "embeddings": mine.grad.float() / WORLD, "weight": head.weight.grad},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32-inputs", "bf16-inputs"])
def test_sharded_head_matches_the_single_process_loss_under_bf16_autocast(tmp_path, dtype):
    mp.spawn(_sharded, args=(str(tmp_path / "store"), str(tmp_path), dtype), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]

    reference, embeddings, labels = _inputs(dtype)
    embeddings.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = reference(embeddings, labels)
    value.backward()

    for result in ranks:
        assert result["value"].dtype == torch.float32
        torch.testing.assert_close(result["value"], value.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["weight"] for r in ranks]), reference.weight.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([r["embeddings"] for r in ranks]), embeddings.grad.float(),
                               rtol=1e-5, atol=1e-6)


def test_sharded_head_validates_its_inputs_like_the_loss():
    reference, embeddings, labels = _inputs(torch.float32)
    head = ShardedMarginHead(reference, 0, 1)
    with pytest.raises(ValueError, match="labels must lie in"):
        head(embeddings, labels + CLASSES)
    with pytest.raises(ValueError, match="embeddings must have shape"):
        head(embeddings[:, :3], labels)
