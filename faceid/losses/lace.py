"""LACE, the learnable adaptive cosine estimator (Peeples et al., "Learnable Adaptive Cosine Estimator (LACE)
for Image Classification", Eq. 3-4).

z_ij = s_jᵀP(x_i − μ) / (√(s_jᵀPs_j) · √((x_i − μ)ᵀP(x_i − μ))), loss CE(scale · z).
P = Σ_b⁻¹ is kept positive definite as P = MMᵀ + εI. Then s_jᵀPx = [Mᵀs_j; √ε s_j]·[Mᵀx; √ε x],
so the ACE score is the cosine between whitened vectors w(v) = [Mᵀv; √ε v]: one matmul per batch,
no SVD or eigendecomposition (the paper's implementation ran an SVD every step).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import ClassificationLoss, class_weight
from faceid.losses.registry import LOSSES


@LOSSES.register("lace")
class LACELoss(ClassificationLoss):
    """`use_mean` / `use_cov` switch the learnt background mean and covariance (Table 4's ablation):
    off means μ = 0 and P = I respectively."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 1.0, use_mean: bool = True,
                 use_cov: bool = True, eps: float = 1e-4):
        super().__init__(embedding_dim, num_classes)
        self.s, self.use_mean, self.use_cov, self.eps = float(s), use_mean, use_cov, float(eps)
        self.signatures = class_weight(num_classes, embedding_dim)
        self.mean = nn.Parameter(torch.zeros(embedding_dim), requires_grad=use_mean)
        self.whitening = nn.Parameter(torch.eye(embedding_dim), requires_grad=use_cov)

    def background_mean(self) -> torch.Tensor:
        return self.mean if self.use_mean else torch.zeros_like(self.mean)

    def whiten(self, vectors: torch.Tensor) -> torch.Tensor:
        if not self.use_cov:
            return vectors
        return torch.cat([vectors @ self.whitening, math.sqrt(self.eps) * vectors], dim=1)

    def logits(self, embeddings):
        centred = embeddings - self.background_mean()
        scores = F.normalize(self.whiten(centred), dim=1) @ F.normalize(self.whiten(self.signatures), dim=1).T
        return self.s * scores

    def extra_repr(self):
        return f"{super().extra_repr()}, s={self.s}, use_mean={self.use_mean}, use_cov={self.use_cov}"
