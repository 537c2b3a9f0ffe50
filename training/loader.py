"""The training DataLoader: decoding and albumentations run in `workers` processes, batches are
pinned for CUDA, and each worker runs torch ops on one thread so workers and the model step do not
oversubscribe the cores. (OpenCV's thread count is left alone: `cv2.setNumThreads` in a forked worker
deadlocks once the parent has used OpenCV's thread pool.)"""

import torch
from torch.utils.data import DataLoader, Dataset


def _one_thread_per_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)


def build_loader(samples: Dataset, batches: list[list], workers: int, device: torch.device) -> DataLoader:
    """A loader over the precomputed `batches` (lists of `samples` items), in order."""
    extra = {"worker_init_fn": _one_thread_per_worker, "prefetch_factor": 4} if workers else {}
    return DataLoader(samples, batch_sampler=batches, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=False, **extra)
