"""Timing helpers shared by the benchmarks."""

import time
from collections.abc import Callable

import torch


def best_time(function: Callable[[], object], repeats: int, device: torch.device, warmup: int = 1) -> float:
    """The fastest of `repeats` runs of `function`, in seconds, after `warmup` untimed runs."""
    for _ in range(warmup):
        function()
    timings = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings)
