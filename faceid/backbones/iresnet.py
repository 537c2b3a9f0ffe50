"""insightface's IResNet (ArcFace paper): pre-activation-style IBasicBlocks, PReLU, and the
BN-Dropout-FC-BN embedding neck."""

import torch
import torch.nn as nn

from faceid.backbones.registry import BACKBONES

LAYERS = {"iresnet18": [2, 2, 2, 2], "iresnet34": [3, 4, 6, 3], "iresnet50": [3, 4, 14, 3],
          "iresnet100": [3, 13, 30, 3]}


class IBasicBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(inputs, eps=1e-5),
            nn.Conv2d(inputs, outputs, 3, 1, 1, bias=False),
            nn.BatchNorm2d(outputs, eps=1e-5),
            nn.PReLU(outputs),
            nn.Conv2d(outputs, outputs, 3, stride, 1, bias=False),
            nn.BatchNorm2d(outputs, eps=1e-5),
        )
        self.shortcut = (nn.Identity() if stride == 1 and inputs == outputs else
                         nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride, bias=False),
                                       nn.BatchNorm2d(outputs, eps=1e-5)))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class EmbeddingNeck(nn.Sequential):
    """BN -> Dropout -> Flatten -> FC -> BN1d: insightface's neck from a (C, S, S) map to the embedding."""

    def __init__(self, channels: int, spatial: int, embedding_dim: int, dropout: float = 0.0):
        super().__init__(nn.BatchNorm2d(channels, eps=1e-5), nn.Dropout(dropout), nn.Flatten(),
                         nn.Linear(channels * spatial * spatial, embedding_dim),
                         nn.BatchNorm1d(embedding_dim, eps=1e-5))


class IResNet(nn.Module):
    def __init__(self, layers: list[int], embedding_dim: int = 512, input_size: int = 112, dropout: float = 0.0):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"iresnet needs input_size divisible by 16, got {input_size}")
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, eps=1e-5), nn.PReLU(64))
        stages, inputs = [], 64
        for outputs, blocks in zip((64, 128, 256, 512), layers, strict=True):
            stages.append(IBasicBlock(inputs, outputs, 2))
            stages.extend(IBasicBlock(outputs, outputs, 1) for _ in range(blocks - 1))
            inputs = outputs
        self.stages = nn.Sequential(*stages)
        self.neck = EmbeddingNeck(512, input_size // 16, embedding_dim, dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.stages(self.stem(images)))


def _register(name: str):
    @BACKBONES.register(name)
    def build(embedding_dim: int = 512, input_size: int = 112, dropout: float = 0.0) -> IResNet:
        return IResNet(LAYERS[name], embedding_dim, input_size, dropout)

    build.__doc__ = f"{name}: IResNet with stages {LAYERS[name]}."
    return build


for _name in LAYERS:
    _register(_name)
