"""MobileFaceNet (Chen et al. 2018): inverted residual bottlenecks and a global depthwise
convolution (GDConv) in place of global average pooling."""

import torch
import torch.nn as nn

from faceid.backbones.registry import BACKBONES

# (expansion, output channels, repeats, stride)
BOTTLENECKS = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


def conv_bn(inputs, outputs, kernel, stride, padding, groups=1, activation=True):
    layers = [nn.Conv2d(inputs, outputs, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(outputs)]
    if activation:
        layers.append(nn.PReLU(outputs))
    return nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, inputs, outputs, stride, expansion):
        super().__init__()
        hidden = inputs * expansion
        self.residual = stride == 1 and inputs == outputs
        self.body = nn.Sequential(conv_bn(inputs, hidden, 1, 1, 0),
                                  conv_bn(hidden, hidden, 3, stride, 1, groups=hidden),
                                  conv_bn(hidden, outputs, 1, 1, 0, activation=False))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


@BACKBONES.register("mobilefacenet")
class MobileFaceNet(nn.Module):
    def __init__(self, embedding_dim: int = 512, input_size: int = 112):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"mobilefacenet needs input_size divisible by 16, got {input_size}")
        layers = [conv_bn(3, 64, 3, 2, 1), conv_bn(64, 64, 3, 1, 1, groups=64)]
        inputs = 64
        for expansion, outputs, repeats, stride in BOTTLENECKS:
            for index in range(repeats):
                layers.append(Bottleneck(inputs, outputs, stride if index == 0 else 1, expansion))
                inputs = outputs
        layers.append(conv_bn(inputs, 512, 1, 1, 0))
        self.features = nn.Sequential(*layers)
        spatial = input_size // 16
        self.neck = nn.Sequential(conv_bn(512, 512, spatial, 1, 0, groups=512, activation=False),
                                  nn.Conv2d(512, embedding_dim, 1, bias=False), nn.BatchNorm2d(embedding_dim),
                                  nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.features(images))
