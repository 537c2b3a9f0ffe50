"""Angular-margin losses.

MarginTransform is the one formula behind ArcFace, CosFace/AM-Softmax and their combination:
the target logit is s(cos(m1 θ_y + m2) − m3), every other logit s cos θ_j. It holds no weight:
CombinedMarginLoss is the class vectors plus that transform, and the model-parallel head of
`training.partial_fc` is a shard of the class vectors plus the same transform.

LargeMarginSoftmax is L-Softmax and, with normalised class vectors and no bias, A-Softmax
(SphereFace): the target logit is ‖W_y‖‖x‖ψ_λ(θ_y) with ψ(θ) = (−1)^k cos(mθ) − 2k on
[kπ/m, (k+1)π/m] and ψ_λ = (λ cos θ + ψ)/(1 + λ), λ annealed from `lambda_start` to `lambda_min`.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import ClassificationLoss, class_weight, cosine_logits, replace_target
from faceid.losses.registry import LOSSES

ANGLE_EPS = 1e-7


class MarginTransform(nn.Module):
    """Cosines to training logits, weight-free: (cos (B, C), labels (B,)) -> s·cos with the target entry
    of each row replaced by s(cos(m1 θ_y + m2) − m3).

    The math runs in float32 (float64 stays float64) with autocast off, whatever the input dtype.
    Fallback when m1 θ_y + m2 would pass π (where cos stops decreasing): beyond the boundary
    θ* = (π − m2)/m1 the target logit continues as s(cos θ_y − cos θ* − 1 − m3), which is
    continuous at θ* and keeps decreasing in θ, so a wrong-side sample is never rewarded.
    """

    def __init__(self, s: float = 64.0, m1: float = 1.0, m2: float = 0.5, m3: float = 0.0):
        super().__init__()
        if m1 <= 0:
            raise ValueError(f"m1 must be > 0, got {m1}")
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)

    def target_margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        """cos(m1 θ + m2) − m3 for the target cosines (B,), with the fallback beyond θ*."""
        if self.m1 == 1.0 and self.m2 == 0.0:
            return cos_target - self.m3
        theta = torch.acos(cos_target.clamp(-1 + ANGLE_EPS, 1 - ANGLE_EPS))
        boundary = (math.pi - self.m2) / self.m1
        inside = torch.cos(self.m1 * theta + self.m2) - self.m3
        beyond = cos_target - math.cos(boundary) - 1.0 - self.m3
        return torch.where(theta <= boundary, inside, beyond)

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, has_target: torch.Tensor | None = None) -> torch.Tensor:
        """`has_target` (B,) bool, for a shard of the classes: rows whose target is not among these
        columns get no margin (their `labels` entry is ignored)."""
        with torch.autocast(cos.device.type, enabled=False):
            cos = cos if cos.dtype == torch.float64 else cos.float()
            cos_target = self.target_margin(cos.gather(1, labels[:, None]).squeeze(1))
            margined = replace_target(cos, labels, cos_target)
            if has_target is not None:
                margined = torch.where(has_target[:, None], margined, cos)
            return self.s * margined

    def extra_repr(self):
        return f"s={self.s}, m1={self.m1}, m2={self.m2}, m3={self.m3}"


class CombinedMarginLoss(ClassificationLoss):
    """Class vectors plus a MarginTransform: the one formula behind ArcFace, CosFace, AM-Softmax."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.5, m3: float = 0.0):
        super().__init__(embedding_dim, num_classes)
        self.margin = MarginTransform(s, m1, m2, m3)
        self.weight = class_weight(num_classes, embedding_dim)

    def logits(self, embeddings):
        return self.margin.s * cosine_logits(embeddings, self.weight)

    def target_margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return self.margin.target_margin(cos_target)

    def training_logits(self, embeddings, labels):
        return self.margin(cosine_logits(embeddings, self.weight), labels)


@LOSSES.register("combined")
class CombinedLoss(CombinedMarginLoss):
    """Combined margin (insightface): s(cos(m1 θ + m2) − m3), defaults 64, 1.0, 0.5, 0.0."""


@LOSSES.register("arcface")
class ArcFaceLoss(CombinedMarginLoss):
    """ArcFace (Deng et al.): additive angular margin, s cos(θ_y + m)."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__(embedding_dim, num_classes, s=s, m1=1.0, m2=m, m3=0.0)


@LOSSES.register("cosface")
class CosFaceLoss(CombinedMarginLoss):
    """CosFace (Wang et al.): additive cosine margin, s(cos θ_y − m)."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.35):
        super().__init__(embedding_dim, num_classes, s=s, m1=1.0, m2=0.0, m3=m)


@LOSSES.register("amsoftmax")
class AMSoftmaxLoss(CombinedMarginLoss):
    """AM-Softmax (Wang et al.): the CosFace formula with its own defaults s=30, m=0.4."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 30.0, m: float = 0.4):
        super().__init__(embedding_dim, num_classes, s=s, m1=1.0, m2=0.0, m3=m)


def chebyshev_cos(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(mθ) as the Chebyshev polynomial T_m(cos θ): no acos, so gradients stay finite at ±1."""
    previous, current = torch.ones_like(cos), cos
    if m == 0:
        return previous
    for _ in range(m - 1):
        previous, current = current, 2 * cos * current - previous
    return current


@LOSSES.register("lsoftmax")
class LargeMarginSoftmax(ClassificationLoss):
    """L-Softmax (Liu et al. 2016): multiplicative angular margin on un-normalised class vectors.

    λ = max(lambda_min, lambda_start / (1 + 0.12 · iteration)); the iteration counter advances once
    per training-mode forward. `logits` (test time) is the plain ‖W_j‖‖x‖cos θ_j.
    """

    normalize_weights = False

    def __init__(self, embedding_dim: int, num_classes: int, m: int = 4, lambda_start: float = 1000.0,
                 lambda_min: float = 5.0):
        super().__init__(embedding_dim, num_classes)
        if int(m) != m or m < 1:
            raise ValueError(f"m must be a positive integer, got {m}")
        self.weight = class_weight(num_classes, embedding_dim)
        self.m, self.lambda_start, self.lambda_min = int(m), float(lambda_start), float(lambda_min)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        return max(self.lambda_min, self.lambda_start / (1.0 + 0.12 * int(self.iteration)))

    def class_vectors(self):
        return F.normalize(self.weight, dim=1) if self.normalize_weights else self.weight

    def logits(self, embeddings):
        return embeddings @ self.class_vectors().T

    def psi(self, cos: torch.Tensor) -> torch.Tensor:
        """ψ(θ) = (−1)^k cos(mθ) − 2k on [kπ/m, (k+1)π/m]."""
        theta = torch.acos(cos.detach().clamp(-1, 1))
        k = torch.floor(self.m * theta / math.pi).clamp(max=self.m - 1)
        sign = 1 - 2 * torch.remainder(k, 2)
        return sign * chebyshev_cos(cos, self.m) - 2 * k

    def training_logits(self, embeddings, labels):
        weights = self.class_vectors()
        logits = embeddings @ weights.T
        target = logits.gather(1, labels[:, None]).squeeze(1)
        norms = (embeddings.norm(dim=1) * weights.norm(dim=1)[labels]).clamp_min(1e-12)
        cos = target / norms
        lam = self.current_lambda()
        margin_target = norms * (lam * cos + self.psi(cos)) / (1 + lam)
        if self.training:
            self.iteration += 1
        return replace_target(logits, labels, margin_target)

    def extra_repr(self):
        return f"{super().extra_repr()}, m={self.m}, lambda={self.current_lambda():.3g}"


@LOSSES.register("sphereface")
class SphereFaceLoss(LargeMarginSoftmax):
    """A-Softmax (SphereFace, Liu et al. 2017): L-Softmax with ‖W_j‖ = 1 and no bias."""

    normalize_weights = True
