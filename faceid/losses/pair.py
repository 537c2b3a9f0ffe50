"""Pair and triplet losses on L2-normalised embeddings: contrastive and FaceNet's triplet loss.

Neither needs class vectors; both are vectorised over the batch (no Python loop over samples).
A batch with no usable pair or triplet gives a loss of exactly zero that is still connected to
the embeddings, so backward() works and yields zero gradients.
"""

import torch
import torch.nn.functional as F

from faceid.losses.base import FaceLoss, squared_distances
from faceid.losses.registry import LOSSES


def zero_loss(embeddings: torch.Tensor) -> torch.Tensor:
    return embeddings.sum() * 0.0


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(same, different) boolean (B, B) masks; `same` excludes the diagonal."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


@LOSSES.register("contrastive")
class ContrastiveLoss(FaceLoss):
    """Mean over all pairs i<j of ½d² (same identity) or ½max(0, margin − d)² (different),
    with d = ‖x̂_i − x̂_j‖ (Hadsell et al., DeepID2)."""

    def __init__(self, embedding_dim: int, num_classes: int | None = None, margin: float = 1.0):
        super().__init__(embedding_dim, num_classes)
        self.margin = float(margin)

    def compute(self, embeddings, labels):
        if len(labels) < 2:
            return zero_loss(embeddings)
        squared = squared_distances(*(F.normalize(embeddings, dim=1),) * 2)
        upper = torch.ones_like(squared, dtype=torch.bool).triu(1)
        same, different = pair_masks(labels)
        distance = squared.clamp_min(1e-12).sqrt()
        per_pair = torch.where(same, 0.5 * squared, 0.5 * F.relu(self.margin - distance) ** 2)
        return per_pair[upper].mean()


@LOSSES.register("triplet")
class TripletLoss(FaceLoss):
    """FaceNet's triplet loss, D = squared distance of L2-normalised embeddings.

    For every anchor-positive pair (a, p), a ≠ p, one negative is chosen:
    - `semihard` (default): the negative with the smallest D_an among those with D_an > D_ap,
      or, if there is none, the negative with the largest D_an; loss averaged over the pairs;
    - `hard` (batch-hard): per anchor, its farthest positive and nearest negative; averaged over anchors;
    - `all`: every valid triplet (a, p, n), averaged over all of them.
    The per-triplet loss is max(0, D_ap − D_an + margin).
    """

    MINING = ("semihard", "hard", "all")

    def __init__(self, embedding_dim: int, num_classes: int | None = None, margin: float = 0.2,
                 mining: str = "semihard"):
        super().__init__(embedding_dim, num_classes)
        if mining not in self.MINING:
            raise ValueError(f"mining must be one of {self.MINING}, got {mining!r}")
        self.margin, self.mining = float(margin), mining

    def compute(self, embeddings, labels):
        distances = squared_distances(*(F.normalize(embeddings, dim=1),) * 2)
        positive, negative = pair_masks(labels)
        has_negative = negative.any(1)
        if self.mining == "hard":
            anchors = positive.any(1) & has_negative
            if not anchors.any():
                return zero_loss(embeddings)
            farthest_positive = distances.masked_fill(~positive, float("-inf")).amax(1)
            nearest_negative = distances.masked_fill(~negative, float("inf")).amin(1)
            return F.relu(farthest_positive - nearest_negative + self.margin)[anchors].mean()
        pairs = positive & has_negative[:, None]
        if not pairs.any():
            return zero_loss(embeddings)
        d_ap = distances.unsqueeze(2)  # (a, p, 1)
        d_an = distances.unsqueeze(1)  # (a, 1, n)
        if self.mining == "all":
            valid = pairs.unsqueeze(2) & negative.unsqueeze(1)
            return F.relu(d_ap - d_an + self.margin)[valid].mean()
        outside = negative.unsqueeze(1) & (d_an > d_ap)  # negatives farther than the positive
        semihard = torch.where(outside, d_an, torch.full_like(d_an, float("inf"))).amin(2)
        hardest = distances.masked_fill(~negative, float("-inf")).amax(1, keepdim=True).expand_as(semihard)
        chosen = torch.where(outside.any(2), semihard, hardest)
        return F.relu(distances - chosen + self.margin)[pairs].mean()

    def extra_repr(self):
        return f"{super().extra_repr()}, margin={self.margin}, mining={self.mining}"
