"""Large-margin Gaussian mixture loss (Wan et al., "Rethinking Feature Distribution for Loss
Functions in Image Classification", CVPR 2018).

Features follow a mixture of Gaussians N(μ_k, Σ_k), Σ_k diagonal, equal priors. With
d_k = ½(x − μ_k)ᵀΣ_k⁻¹(x − μ_k), the logits are −d_k − ½log|Σ_k|, and the target class also pays
the margin m = α·d_y. The likelihood regulariser is L_lkd = (1/B) Σ_i (d_{y_i} + ½log|Σ_{y_i}|)
(the Gaussian's negative log-likelihood without its constant). Loss = CE + lkd_weight · L_lkd.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import ClassificationLoss, class_weight, replace_target
from faceid.losses.registry import LOSSES


@LOSSES.register("lgm")
class LGMLoss(ClassificationLoss):
    def __init__(self, embedding_dim: int, num_classes: int, alpha: float = 0.1, lkd_weight: float = 0.1,
                 learn_covariance: bool = True):
        super().__init__(embedding_dim, num_classes)
        self.alpha, self.lkd_weight = float(alpha), float(lkd_weight)
        self.centers = class_weight(num_classes, embedding_dim)
        self.log_variances = nn.Parameter(torch.zeros(num_classes, embedding_dim), requires_grad=learn_covariance)

    def half_mahalanobis(self, embeddings):
        """d_k for every sample and class: (B, C)."""
        precision = torch.exp(-self.log_variances)  # (C, d)
        # Σ_d p(x − μ)² expanded into matmuls, so no (B, C, d) tensor is ever built
        quadratic = embeddings.pow(2) @ precision.T - 2 * embeddings @ (precision * self.centers).T
        return 0.5 * (quadratic + (precision * self.centers.pow(2)).sum(1))

    def log_determinant_half(self):
        return 0.5 * self.log_variances.sum(1)  # ½ log|Σ_k|, (C,)

    def logits(self, embeddings):
        return -self.half_mahalanobis(embeddings) - self.log_determinant_half()

    def compute(self, embeddings, labels):
        distances = self.half_mahalanobis(embeddings)
        log_det = self.log_determinant_half()
        logits = -distances - log_det
        target_distance = distances.gather(1, labels[:, None]).squeeze(1)
        target = -(1 + self.alpha) * target_distance - log_det[labels]
        classification = F.cross_entropy(replace_target(logits, labels, target), labels)
        likelihood = (target_distance + log_det[labels]).mean()
        return classification + self.lkd_weight * likelihood
