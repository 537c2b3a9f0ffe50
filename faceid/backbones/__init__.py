"""Backbones: networks from an aligned face crop to a raw (unnormalised) embedding.

`build_backbone(name, embedding_dim=512, input_size=112)` is the one entry point; each family
member is one module that registers itself in `BACKBONES`.
"""

import torch.nn as nn

from faceid.backbones import dlib_resnet, external, iresnet, mobilefacenet, small_cnn  # noqa: F401  (register themselves)
from faceid.backbones.registry import BACKBONES


def available_backbones() -> list[str]:
    return BACKBONES.names()


def build_backbone(name: str, embedding_dim: int = 512, input_size: int = 112, **options) -> nn.Module:
    """Build backbone `name` producing `embedding_dim`-d embeddings from (N, 3, input_size, input_size).

    `options` are the family's own (e.g. `width`, `norm` for small_cnn); an unknown one is a
    ValueError naming it and the valid ones."""
    if embedding_dim < 1:
        raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
    return BACKBONES.build(name, embedding_dim=embedding_dim, input_size=input_size, **options)
