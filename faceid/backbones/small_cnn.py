"""A small CNN for 28-128 px inputs, quick tests and the CPU demo."""

import torch
import torch.nn as nn

from faceid.backbones.registry import BACKBONES


def _conv_block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.PReLU(outputs),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.PReLU(outputs),
        nn.MaxPool2d(2),
    )


@BACKBONES.register("small_cnn")
class SmallCNN(nn.Module):
    """Four conv blocks (32-64-128-256 channels), global average pooling, FC + BN embedding neck."""

    def __init__(self, embedding_dim: int = 128, input_size: int = 112, width: int = 32):
        super().__init__()
        if not 28 <= input_size <= 128:
            raise ValueError(f"small_cnn takes input_size in [28, 128], got {input_size}")
        channels = [3, width, width * 2, width * 4, width * 8]
        self.features = nn.Sequential(*[_conv_block(a, b) for a, b in zip(channels, channels[1:])])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1], embedding_dim, bias=False),
                                  nn.BatchNorm1d(embedding_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.features(images)))
