"""Speed and memory of the margin head with sampled class centres against the full head (sample rate 1).

Rate 1 is the head the trainer builds without sampling: ArcFace (CombinedMarginLoss) with its whole
weight in torch SGD (momentum 0.9, weight decay). Rate < 1 is `SampledMarginHead` in one process,
attached to the same SGD. A step is forward + backward + optimiser step on random embeddings (a
stand-in for the backbone's output) and labels; each row gives the median of `steps` steps after one
warm-up, and ratios to the rate-1 row of the same class count, measured in the same run.

Memory: on CUDA the peak allocated while building the head and stepping it. On CPU, the bytes of the
head's tensors computed from their sizes (float32): class vectors and their momentum, whole (2·C·d); the
rows a step uses with their gradient and normalised copy, plus for the sampled head the gathered rows
and their gathered momentum (2·k·d or 4·k·d); and the (batch, k) cosines, logits and softmax gradient.

`python -m faceid.training.benchmarks.head` prints the table for 10k, 100k and 1M classes.
"""

import gc
import statistics
import time

import torch

from faceid.losses import build_loss
from faceid.training.sampled_head import SampledMarginHead


def _build(classes: int, rate: float, dim: int, device: torch.device):
    torch.manual_seed(0)
    loss = build_loss("arcface", dim, classes)
    head = (loss if rate == 1 else SampledMarginHead(loss, rate, seed=0)).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    if rate < 1:
        head.attach(optimizer)
    return head, optimizer


def _step_seconds(head, optimizer, embeddings, labels) -> float:
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    head(embeddings, labels).backward()
    optimizer.step()
    if embeddings.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def _computed_bytes(classes: int, used: int, rate: float, batch: int, dim: int) -> int:
    step_rows = (2 if rate == 1 else 4) * used * dim
    return 4 * (2 * classes * dim + step_rows + 3 * batch * used)


def head_benchmark_rows(classes=(10_000, 100_000, 1_000_000), rates=(1.0, 0.1), batch: int = 128, dim: int = 512,
                        device: str = "cpu", steps: int = 3) -> list[dict]:
    """One row per (class count, rate): ms per step, memory bytes, and both as ratios to rate 1."""
    device = torch.device(device)
    rows = []
    for count in classes:
        generator = torch.Generator().manual_seed(count)
        embeddings = torch.randn(batch, dim, generator=generator).to(device).requires_grad_()
        labels = torch.randint(0, count, (batch,), generator=generator).to(device)
        for rate in rates:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            head, optimizer = _build(count, rate, dim, device)
            times = [_step_seconds(head, optimizer, embeddings, labels) for _ in range(steps + 1)][1:]
            used = count if rate == 1 else max(int(rate * count), len(labels.unique()))
            measured = device.type == "cuda"
            memory = (torch.cuda.max_memory_allocated(device) if measured
                      else _computed_bytes(count, used, rate, batch, dim))
            rows.append({"classes": count, "rate": rate, "sampled": used,
                         "ms_per_step": 1000 * statistics.median(times), "memory_bytes": memory,
                         "memory": "measured" if measured else "computed",
                         "device": str(device)})
            del head, optimizer
            gc.collect()
        baseline = next((r for r in rows if r["classes"] == count and r["rate"] == 1.0), rows[-len(rates)])
        for row in rows[-len(rates):]:
            row["speedup"] = baseline["ms_per_step"] / row["ms_per_step"]
            row["memory_ratio"] = row["memory_bytes"] / baseline["memory_bytes"]
    return rows


def print_head_table(rows: list[dict]) -> None:
    print("| classes | rate | sampled | ms/step | speed-up vs rate 1 | memory MB | memory vs rate 1 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['classes']:,} | {r['rate']:g} | {r['sampled']:,} | {r['ms_per_step']:.1f} | {r['speedup']:.2f}x "
              f"| {r['memory_bytes'] / 2**20:,.0f} ({r['memory']}) | {r['memory_ratio']:.2f} |")


if __name__ == "__main__":
    print_head_table(head_benchmark_rows())
