"""Softmax-family losses: SoftMax, L2-SoftMax, NormFace and CoCo, as set out in Petiushko's lecture
"FaceID: Evolution of Loss function"."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses.base import ClassificationLoss, class_weight, cosine_logits
from faceid.losses.registry import LOSSES


@LOSSES.register("softmax")
class SoftmaxLoss(ClassificationLoss):
    """CE(x Wᵀ + b)."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__(embedding_dim, num_classes)
        self.weight = class_weight(num_classes, embedding_dim)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def logits(self, embeddings):
        return embeddings @ self.weight.T + self.bias


@LOSSES.register("l2softmax")
class L2SoftmaxLoss(ClassificationLoss):
    """CE(α x̂ Wᵀ + b): features constrained to the sphere of radius α (Ranjan et al.)."""

    def __init__(self, embedding_dim: int, num_classes: int, alpha: float = 16.0, learn_alpha: bool = False):
        super().__init__(embedding_dim, num_classes)
        self.weight = class_weight(num_classes, embedding_dim)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.alpha = nn.Parameter(torch.tensor(float(alpha)), requires_grad=learn_alpha)

    def logits(self, embeddings):
        return self.alpha * F.normalize(embeddings, dim=1) @ self.weight.T + self.bias


@LOSSES.register("normface")
class NormFaceLoss(ClassificationLoss):
    """CE(s cos θ): normalised features and class vectors, learnable scale s (Wang et al.)."""

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 16.0, learn_scale: bool = True):
        super().__init__(embedding_dim, num_classes)
        self.weight = class_weight(num_classes, embedding_dim)
        self.s = nn.Parameter(torch.tensor(float(s)), requires_grad=learn_scale)

    def logits(self, embeddings):
        return self.s * cosine_logits(embeddings, self.weight)


@LOSSES.register("coco")
class CocoLoss(ClassificationLoss):
    """CE(α x̂ · ĉ_j) with learnable class centroids `centers` (Liu et al., congenerous cosine)."""

    def __init__(self, embedding_dim: int, num_classes: int, alpha: float = 16.0):
        super().__init__(embedding_dim, num_classes)
        self.centers = class_weight(num_classes, embedding_dim)
        self.alpha = float(alpha)

    def logits(self, embeddings):
        return self.alpha * cosine_logits(embeddings, self.centers)
