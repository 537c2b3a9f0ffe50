"""`faceid bench losses`: forward + backward time of every loss, as a ratio to `softmax`.

B=256, d=512, C=10,000 for every loss, and C=100,000 for the classification heads, all in one run
on one device, so the ratios compare like with like.
"""

import torch

from faceid.device import resolve_device
from faceid.evaluation.benchmarks.timing import best_time
from faceid.losses import ClassificationLoss, JointLoss, available_losses, build_loss

FULL = {"batch": 256, "dim": 512, "classes": (10_000, 100_000)}
QUICK = {"batch": 32, "dim": 64, "classes": (100, 1_000)}


def is_head(loss) -> bool:
    """Losses whose cost grows with the number of identities (they hold class vectors)."""
    return isinstance(loss.main if isinstance(loss, JointLoss) else loss, ClassificationLoss)


def _step(loss, embeddings, labels):
    def run():
        loss.zero_grad(set_to_none=True)
        embeddings.grad = None
        loss(embeddings, labels).backward()

    return run


def run_loss_benchmark(device: str = "auto", repeats: int = 3, quick: bool = False) -> list[dict]:
    sizes = QUICK if quick else FULL
    target = resolve_device(device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    print(f"faceid bench losses  device={target}  B={sizes['batch']}  d={sizes['dim']}  "
          f"(best of {repeats}, forward+backward)")
    print(f"{'loss':<18}{'C':>9}{'ms':>11}{'x softmax':>11}", flush=True)
    for classes in sizes["classes"]:
        embeddings = torch.randn(sizes["batch"], sizes["dim"], generator=generator).to(target).requires_grad_(True)
        labels = torch.randint(0, classes, (sizes["batch"],), generator=generator).to(target)
        labels[: sizes["batch"] // 2] = labels[sizes["batch"] // 2:]  # every identity in the batch appears twice
        baseline = None
        for name in ["softmax"] + [n for n in available_losses() if n != "softmax"]:
            loss = build_loss(name, sizes["dim"], classes).to(target).train()
            if classes != sizes["classes"][0] and not is_head(loss):
                continue
            warmup = 3 if baseline is None else 1  # the first measurement also pays for thread-pool start-up
            seconds = best_time(_step(loss, embeddings, labels), repeats, target, warmup=warmup)
            baseline = baseline or seconds
            row = {"loss": name, "classes": classes, "ms": seconds * 1e3, "ratio": seconds / baseline}
            rows.append(row)
            print(f"{row['loss']:<18}{row['classes']:>9}{row['ms']:>11.2f}{row['ratio']:>11.2f}", flush=True)
            del loss
    return rows
