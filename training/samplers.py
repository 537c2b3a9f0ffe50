"""Batch samplers: which samples make up each global batch of an epoch.

Every sampler is a pure function of (seed, epoch): `batches(epoch)` returns the epoch's list of
global batches, so a resumed run and every rank of a distributed run see exactly the same batches
(each rank takes its contiguous slice of the global batch).
"""

import numpy as np
import torch.nn as nn

from faceid.losses import ClassificationLoss, FaceLoss
from faceid.registry import Registry

SAMPLERS = Registry("sampler")


class BatchSampler:
    def __init__(self, labels: np.ndarray, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.labels, self.batch_size, self.seed = np.asarray(labels), batch_size, seed

    def rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch])

    def order(self, epoch: int) -> np.ndarray:
        raise NotImplementedError

    def batches(self, epoch: int) -> list[np.ndarray]:
        order = self.order(epoch)
        full = len(order) // self.batch_size
        if full == 0:
            raise ValueError(f"{len(order)} samples cannot fill one batch of {self.batch_size}")
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(full)]


@SAMPLERS.register("random")
class RandomBatchSampler(BatchSampler):
    """A seeded permutation per epoch; the last incomplete batch is dropped."""

    def order(self, epoch):
        return self.rng(epoch).permutation(len(self.labels))


@SAMPLERS.register("balanced")
class ClassBalancedBatchSampler(BatchSampler):
    """Samples drawn with probability inversely proportional to their class size (with replacement),
    one epoch being as many draws as there are samples."""

    def order(self, epoch):
        _, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
        weights = 1.0 / counts[inverse]
        return self.rng(epoch).choice(len(self.labels), size=len(self.labels), p=weights / weights.sum())


@SAMPLERS.register("pk")
class PKBatchSampler(BatchSampler):
    """P identities x K images per batch (batch_size = P*K), needed by pair and triplet losses.

    Identities with fewer than K images are sampled with replacement; those with one image are
    left out, since they cannot form a positive pair.
    """

    def __init__(self, labels, batch_size: int, seed: int = 0, images_per_identity: int = 4):
        super().__init__(labels, batch_size, seed)
        if images_per_identity < 2 or batch_size % images_per_identity:
            raise ValueError(f"P x K batches need K >= 2 dividing batch_size; got K={images_per_identity}, "
                             f"batch_size={batch_size}")
        self.k = images_per_identity
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}
        self.usable = [c for c, members in self.by_class.items() if len(members) >= 2]
        if len(self.usable) < batch_size // self.k:
            raise ValueError(f"P x K batches need P={batch_size // self.k} identities with >= 2 images, "
                             f"found {len(self.usable)}")

    def order(self, epoch):
        rng = self.rng(epoch)
        p = self.batch_size // self.k
        identities = rng.permutation(self.usable)
        batches_per_epoch = max(1, len(self.labels) // self.batch_size)
        order = []
        for batch in range(batches_per_epoch):
            chosen = [identities[(batch * p + i) % len(identities)] for i in range(p)]
            for identity in chosen:
                members = self.by_class[identity]
                order.extend(rng.choice(members, size=self.k, replace=len(members) < self.k))
        return np.array(order)


def build_sampler(name: str, labels, batch_size: int, seed: int = 0, **options) -> BatchSampler:
    """The sampler `name`; an option it does not take is a ValueError naming it and the valid ones."""
    return SAMPLERS.build(name, labels, batch_size, seed, **options)


def auto_sampler(loss: nn.Module) -> str:
    """The sampler `training.sampler: auto` picks: P x K batches for a loss on pairs of samples (a
    FaceLoss without class logits: contrastive, triplet), which needs several images per identity
    in a batch; random batches for a classification loss or a joint loss built on one."""
    return "pk" if isinstance(loss, FaceLoss) and not isinstance(loss, ClassificationLoss) else "random"
