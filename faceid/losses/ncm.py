"""Anchor-based nearest class mean loss (Hao et al., "Anchor-based Nearest Class Mean Loss for
Convolutional Neural Networks", Eq. 4-8).

p(c|x) ∝ exp(−M(x, a_c)) over fixed unit anchors a_c, with M the Euclidean distance (E-NCM,
`metric="euclidean"`) or one minus the cosine (C-NCM, `metric="cosine"`).
"""

import torch
import torch.nn.functional as F

from faceid.losses.base import ClassificationLoss, cosine_logits, squared_distances
from faceid.losses.registry import LOSSES

REFINE_LIMIT = 4096  # above this many classes, seeded random directions are already near-orthogonal


def separated_anchors(num_classes: int, dim: int, seed: int = 0, steps: int = 200) -> torch.Tensor:
    """`num_classes` unit vectors in R^dim, as far apart as we can place them.

    C ≤ d + 1: the vertices of a regular simplex (pairwise cosine −1/(C−1), the optimum), rotated
    into R^d by a seeded orthonormal basis. Otherwise seeded random directions, spread by a few
    steps of minimising the soft maximum of pairwise cosines when C ≤ REFINE_LIMIT.
    """
    generator = torch.Generator().manual_seed(seed)
    if num_classes == 1:
        return F.normalize(torch.randn(1, dim, generator=generator, dtype=torch.float64), dim=1)
    if num_classes <= dim + 1:
        simplex = torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes
        basis, _ = torch.linalg.qr(torch.randn(dim, num_classes, generator=generator, dtype=torch.float64))
        # simplex rows live in the (C−1)-dim subspace orthogonal to the all-ones vector
        ones = F.normalize(torch.ones(num_classes, 1, dtype=torch.float64), dim=0)
        orthogonal, _ = torch.linalg.qr(torch.cat([ones, torch.eye(num_classes, dtype=torch.float64)[:, :-1]], 1))
        coordinates = simplex @ orthogonal[:, 1:]  # (C, C−1)
        return F.normalize(coordinates @ basis[:, : num_classes - 1].T, dim=1)
    anchors = F.normalize(torch.randn(num_classes, dim, generator=generator, dtype=torch.float64), dim=1)
    if num_classes > REFINE_LIMIT:
        return anchors
    anchors.requires_grad_(True)
    optimiser = torch.optim.Adam([anchors], lr=0.01)
    mask = torch.eye(num_classes, dtype=torch.bool)
    for _ in range(steps):
        unit = F.normalize(anchors, dim=1)
        cosines = (unit @ unit.T).masked_fill(mask, -2.0)
        loss = torch.logsumexp(20 * cosines, dim=1).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return F.normalize(anchors.detach(), dim=1)


@LOSSES.register("ncm")
class NCMLoss(ClassificationLoss):
    def __init__(self, embedding_dim: int, num_classes: int, metric: str = "euclidean", seed: int = 0):
        super().__init__(embedding_dim, num_classes)
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.metric = metric
        self.register_buffer("anchors", separated_anchors(num_classes, embedding_dim, seed).float())

    def logits(self, embeddings):
        anchors = self.anchors.to(embeddings.dtype)
        if self.metric == "cosine":
            return cosine_logits(embeddings, anchors) - 1.0
        return -squared_distances(embeddings, anchors).clamp_min(1e-12).sqrt()

    def extra_repr(self):
        return f"{super().extra_repr()}, metric={self.metric}"
