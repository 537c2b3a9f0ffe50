"""Auxiliary terms added to a classification loss (joint supervision): `main + aux_weight · term`.

Each term is a FaceLoss of its own, registered in AUX_TERMS with the weight its paper uses.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import FaceLoss, class_weight, squared_distances
from faceid.losses.pair import pair_masks, zero_loss
from faceid.losses.registry import AUX_TERMS


@AUX_TERMS.register("center")
class CenterTerm(FaceLoss):
    """Center loss (Wen et al.): (1/2B) Σ_i ‖x_i − c_{y_i}‖².

    `center_update="gradient"`: centres are parameters learnt by the optimiser (the Hadamard layer
    of Pilarczyk and Skarbek, "On Intra-class Variance for Deep Learning of Classifiers").
    `center_update="ema"`: Wen's rule after each training-mode forward,
    c_j ← c_j − α Σ_{i: y_i=j}(c_j − x_i) / (1 + n_j), α = `center_alpha`.
    """

    default_weight = 0.01
    factor = 0.5

    def __init__(self, embedding_dim: int, num_classes: int, center_update: str = "gradient",
                 center_alpha: float = 0.5):
        super().__init__(embedding_dim, num_classes)
        if center_update not in ("gradient", "ema"):
            raise ValueError(f"center_update must be 'gradient' or 'ema', got {center_update!r}")
        self.center_update, self.center_alpha = center_update, float(center_alpha)
        self.centers = class_weight(num_classes, embedding_dim)
        self.centers.requires_grad_(center_update == "gradient")

    def compute(self, embeddings, labels):
        value = self.factor * (embeddings - self.centers[labels]).pow(2).sum(1).mean()
        if self.center_update == "ema" and self.training:
            self.ema_update(embeddings.detach(), labels)
        return value

    @torch.no_grad()
    def ema_update(self, embeddings, labels):
        counts = torch.bincount(labels, minlength=self.num_classes).to(embeddings.dtype)
        offsets = self.centers[labels] - embeddings.to(self.centers.dtype)
        differences = torch.zeros_like(self.centers).index_add_(0, labels, offsets)
        self.centers -= self.center_alpha * differences / (1 + counts[:, None])


@AUX_TERMS.register("icv")
class IntraClassVarianceTerm(CenterTerm):
    """Intra-class variance (Pilarczyk and Skarbek, Eq. 5): (1/B) Σ_i ‖x_i − C_{y_i}‖²,
    centroids learnt by the optimiser through a Hadamard layer (the default `center_update`)."""

    default_weight = 0.05
    factor = 1.0


@AUX_TERMS.register("center_invariant")
class CenterInvariantTerm(CenterTerm):
    """Center loss plus the center-invariant term (Wu et al.):
    (1/2B)Σ‖x_i − c_{y_i}‖² + invariant_weight · (1/4B) Σ_i (‖c_{y_i}‖² − (1/K)Σ_j ‖c_j‖²)².

    Petiushko's lecture "FaceID: Evolution of Loss function" prints the CI term without the square;
    Wu et al.'s paper squares it,
    which keeps it bounded below, so the square is used here.
    """

    def __init__(self, embedding_dim: int, num_classes: int, center_update: str = "gradient",
                 center_alpha: float = 0.5, invariant_weight: float = 1.0):
        super().__init__(embedding_dim, num_classes, center_update, center_alpha)
        self.invariant_weight = float(invariant_weight)

    def compute(self, embeddings, labels):
        squared_norms = self.centers.pow(2).sum(1)
        invariant = 0.25 * (squared_norms[labels] - squared_norms.mean()).pow(2).mean()
        return super().compute(embeddings, labels) + self.invariant_weight * invariant


@AUX_TERMS.register("range")
class RangeTerm(FaceLoss):
    """Range loss (Zhang et al.): L_intra + L_inter on raw embeddings.

    L_intra = Σ over classes in the batch of k'/Σ_{j≤k'} 1/D_j, D_j the j-th largest squared
    distance between two samples of the class, k' = min(k, its number of pairs);
    L_inter = max(0, margin − min squared distance between two class means of the batch).
    """

    default_weight = 1e-3

    def __init__(self, embedding_dim: int, num_classes: int | None = None, k: int = 2, margin: float = 1.0):
        super().__init__(embedding_dim, num_classes)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.margin = int(k), float(margin)

    def compute(self, embeddings, labels):
        classes, inverse = torch.unique(labels, return_inverse=True)
        membership = F.one_hot(inverse, len(classes)).to(embeddings.dtype)  # (B, C_b)
        squared = squared_distances(embeddings, embeddings)
        same, _ = pair_masks(labels)
        pairs = same.triu(1)
        per_class = pairs.unsqueeze(0) & membership.T.bool().unsqueeze(2)  # (C_b, B, B)
        largest = torch.where(per_class, squared.unsqueeze(0), torch.zeros_like(squared)).flatten(1)
        k = min(self.k, largest.shape[1])
        top = largest.topk(k, dim=1).values
        count = per_class.flatten(1).sum(1).clamp(max=k)  # k' per class
        valid = torch.arange(k, device=labels.device)[None, :] < count[:, None]
        harmonic = torch.where(valid, 1.0 / top.clamp_min(1e-12), torch.zeros_like(top)).sum(1)
        has_pairs = count > 0
        intra = (count[has_pairs] / harmonic[has_pairs]).sum() if has_pairs.any() else zero_loss(embeddings)
        if len(classes) < 2:
            return intra + zero_loss(embeddings)
        means = (membership.T @ embeddings) / membership.sum(0)[:, None]
        mean_distances = squared_distances(means, means)
        off_diagonal = ~torch.eye(len(classes), dtype=torch.bool, device=labels.device)
        inter = F.relu(self.margin - mean_distances[off_diagonal].min())
        return intra + inter


@AUX_TERMS.register("marginal")
class MarginalTerm(FaceLoss):
    """Marginal loss (Deng et al.), as in Petiushko's lecture "FaceID: Evolution of Loss function":
    1/(m² − m) Σ_{i<j} max(0, ξ − y_ij(θ − ‖x̂_i − x̂_j‖²)), y_ij = +1 same identity, −1 otherwise;
    θ = `threshold`, ξ = `error_margin`."""

    default_weight = 0.01

    def __init__(self, embedding_dim: int, num_classes: int | None = None, threshold: float = 1.2,
                 error_margin: float = 0.3):
        super().__init__(embedding_dim, num_classes)
        self.threshold, self.error_margin = float(threshold), float(error_margin)

    def compute(self, embeddings, labels):
        batch = len(labels)
        if batch < 2:
            return zero_loss(embeddings)
        squared = squared_distances(*(F.normalize(embeddings, dim=1),) * 2)
        sign = torch.where(labels[:, None] == labels[None, :], 1.0, -1.0).to(squared.dtype)
        hinge = F.relu(self.error_margin - sign * (self.threshold - squared))
        upper = torch.ones_like(squared, dtype=torch.bool).triu(1)
        return hinge[upper].sum() / (batch * batch - batch)


class JointLoss(nn.Module):
    """A main classification loss plus a weighted auxiliary term: main + aux_weight · aux."""

    def __init__(self, main: FaceLoss, aux: FaceLoss, aux_weight: float | None = None):
        super().__init__()
        self.main, self.aux = main, aux
        self.aux_weight = float(aux.default_weight if aux_weight is None else aux_weight)
        self.embedding_dim, self.num_classes = main.embedding_dim, main.num_classes

    def forward(self, embeddings, labels):
        return self.main(embeddings, labels) + self.aux_weight * self.aux(embeddings, labels)

    def logits(self, embeddings):
        return self.main.logits(embeddings)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            for part in ("main", "aux"):
                module = self._modules.get(part)
                if module is not None and hasattr(module, name):
                    return getattr(module, name)
            raise

    def extra_repr(self):
        return f"aux_weight={self.aux_weight}"
