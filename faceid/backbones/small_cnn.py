"""A small CNN for 28-128 px inputs, quick tests and the CPU demo."""

import torch
import torch.nn as nn

from faceid.backbones.registry import BACKBONES


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(8, channels)


def _conv_block(inputs: int, outputs: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        _norm(norm, outputs),
        nn.PReLU(outputs),
        nn.Conv2d(outputs, outputs, 3, padding=1, bias=False),
        _norm(norm, outputs),
        nn.PReLU(outputs),
        nn.MaxPool2d(2),
    )


@BACKBONES.register("small_cnn")
class SmallCNN(nn.Module):
    """Four conv blocks (32-64-128-256 channels), global average pooling, FC + BN embedding neck.

    `norm="group"` swaps every BatchNorm for GroupNorm (and drops the neck's BN): batch-independent
    outputs, for tiny batches and for multi-process CPU training, where SyncBatchNorm is unavailable.
    """

    def __init__(self, embedding_dim: int = 128, input_size: int = 112, width: int = 32, norm: str = "batch"):
        super().__init__()
        if not 28 <= input_size <= 128:
            raise ValueError(f"small_cnn takes input_size in [28, 128], got {input_size}")
        if norm not in ("batch", "group"):
            raise ValueError(f"norm must be 'batch' or 'group', got {norm!r}")
        channels = [3, width, width * 2, width * 4, width * 8]
        pairs = zip(channels, channels[1:], strict=False)  # each width with the next: one pair fewer, on purpose
        self.features = nn.Sequential(*[_conv_block(a, b, norm) for a, b in pairs])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1], embedding_dim, bias=False),
                                  nn.BatchNorm1d(embedding_dim) if norm == "batch" else nn.Identity())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.pool(self.features(images)))
