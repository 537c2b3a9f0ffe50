"""Backbones built from other libraries' architectures, with faceid's embedding neck.

- `inception_resnet_v1`: facenet-pytorch's InceptionResnetV1, randomly initialised (its pretrained
  weights download from the internet, which faceid never does); its final L2 normalisation is left
  out so it returns raw embeddings like every faceid backbone.
- `resnet18`, `resnet50`: torchvision's ResNets adapted to 112x112 faces: a 3x3 stride-2 stem without
  max-pooling (7x7 final maps at 112), and insightface's BN-Dropout-FC-BN neck.
"""

import torch
import torch.nn as nn

from faceid.backbones.iresnet import EmbeddingNeck
from faceid.backbones.registry import BACKBONES


@BACKBONES.register("inception_resnet_v1")
class InceptionResnetV1Backbone(nn.Module):
    def __init__(self, embedding_dim: int = 512, input_size: int = 160, dropout: float = 0.6):
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        self.net = InceptionResnetV1(pretrained=None, classify=False, dropout_prob=dropout)
        self.net.last_linear = nn.Linear(1792, embedding_dim, bias=False)
        self.net.last_bn = nn.BatchNorm1d(embedding_dim, eps=0.001, momentum=0.1, affine=True)
        self.net.logits = nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = images
        for layer in (net.conv2d_1a, net.conv2d_2a, net.conv2d_2b, net.maxpool_3a, net.conv2d_3b, net.conv2d_4a,
                      net.conv2d_4b, net.repeat_1, net.mixed_6a, net.repeat_2, net.mixed_7a, net.repeat_3,
                      net.block8, net.avgpool_1a, net.dropout):
            x = layer(x)
        return net.last_bn(net.last_linear(x.flatten(1)))


class TorchvisionResNet(nn.Module):
    def __init__(self, architecture: str, embedding_dim: int, input_size: int, dropout: float):
        super().__init__()
        if input_size % 16:
            raise ValueError(f"{architecture} needs input_size divisible by 16, got {input_size}")
        import torchvision  # here, not at import: torchvision's model zoo pulls in torch._dynamo (seconds of start-up)

        net = getattr(torchvision.models, architecture)(weights=None)
        net.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        channels = net.fc.in_features
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4)
        self.neck = EmbeddingNeck(channels, input_size // 16, embedding_dim, dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(images))


@BACKBONES.register("resnet18")
def resnet18(embedding_dim: int = 512, input_size: int = 112, dropout: float = 0.0) -> TorchvisionResNet:
    return TorchvisionResNet("resnet18", embedding_dim, input_size, dropout)


@BACKBONES.register("resnet50")
def resnet50(embedding_dim: int = 512, input_size: int = 112, dropout: float = 0.0) -> TorchvisionResNet:
    return TorchvisionResNet("resnet50", embedding_dim, input_size, dropout)
