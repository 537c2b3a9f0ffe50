"""dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) as a PyTorch module.

The architecture is dlib's `anet_type` from `examples/dnn_face_recognition_ex.cpp`, layer for layer:

- stem: 7x7 stride-2 convolution (32 filters, no padding), per-channel affine, ReLU, 3x3 stride-2 max-pool
  (no padding): 150 -> 72 -> 35;
- 14 residual blocks, each `relu(block(x) + shortcut(x))` with `block` = conv3x3(stride) -> affine -> ReLU ->
  conv3x3 -> affine; 3x32, then (down, 3x64), (down, 2x128), (down, 2x256), (down, 256) channels;
- a downsampling block (`ares_down`) convolves with stride 2 and *no* padding and its shortcut is a 2x2
  stride-2 average pool, both as dlib sizes them (1 + (n - k) // s); where the two differ in size
  (channels 32 -> 64, or 3x3 against 4x4 maps) dlib's `add_prev` adds them zero-padded to the larger
  size, at the end (extra channels, bottom rows, right columns): 35 -> 17 -> 8 -> 4 -> 2;
- global average pool, then a 256 -> 128 fully connected layer without bias: the raw descriptor.

dlib's batch normalisation is folded into the per-channel affine layers at test time (dlib's `affine_`),
kept here as `Affine` (weight, bias). The module takes faceid-preprocessed input, (pixel - mean) / 256 per
RGB channel with dlib's mean colour, which is what dlib's `input_rgb_image_sized<150>` computes; see
`faceid.zoo.dlib_format` for the weights and the preprocessing.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.backbones.registry import BACKBONES

EMBEDDING_DIM = 128
INPUT_SIZE = 150

# (output channels, downsampling) of each residual block, from the input outward.
BLOCKS = [(32, False)] * 3 + [(64, True)] + [(64, False)] * 3 + [(128, True)] + [(128, False)] * 2 + \
         [(256, True)] + [(256, False)] * 2 + [(256, True)]


class Affine(nn.Module):
    """dlib's `affine_` in CONV mode: y = x * weight[c] + bias[c] (batch norm folded at test time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's `add_prev`: the sum of two (N, C, H, W) tensors of possibly different C, H, W, each
    zero-extended at the end of every dimension to the larger size."""
    if a.shape == b.shape:
        return a + b
    channels, height, width = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def grow(t):
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


class ResidualBlock(nn.Module):
    """dlib's `ares` (identity shortcut) or `ares_down` (stride-2 convolution, 2x2 average-pool shortcut)."""

    def __init__(self, inputs: int, outputs: int, down: bool):
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride, padding=0 if down else 1)
        self.affine1 = Affine(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, padding=1)
        self.affine2 = Affine(outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_zero_padded(y, shortcut))


class DlibResNet(nn.Module):
    """dlib's 29-layer face ResNet: (N, 3, 150, 150) preprocessed RGB -> (N, 128) raw descriptors."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.affine = Affine(32)
        inputs = [32] + [outputs for outputs, _ in BLOCKS[:-1]]
        self.blocks = nn.ModuleList(ResidualBlock(a, b, down) for a, (b, down) in zip(inputs, BLOCKS, strict=True))
        self.fc = nn.Linear(256, EMBEDDING_DIM, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"dlib_resnet takes (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) input, got {tuple(images.shape)}")
        x = F.max_pool2d(F.relu(self.affine(self.conv(images))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def weighted_layers(self) -> list[nn.Module]:
        """The convolutions, affines and the fc layer in forward order: the order of dlib's `con`,
        `affine` and `fc` layers from the input outward."""
        layers: list[nn.Module] = [self.conv, self.affine]
        for block in self.blocks:
            layers += [block.conv1, block.affine1, block.conv2, block.affine2]
        return layers + [self.fc]


@BACKBONES.register("dlib_resnet")
def dlib_resnet(embedding_dim: int = EMBEDDING_DIM, input_size: int = INPUT_SIZE) -> DlibResNet:
    """dlib's pretrained architecture; its shape is fixed, so it needs embedding_dim=128 and input_size=150.
    Weights: `faceid.zoo.dlib_format.read_dlib_network` or a checkpoint from `convert_dlib_model`."""
    if embedding_dim != EMBEDDING_DIM or input_size != INPUT_SIZE:
        raise ValueError(f"dlib_resnet is dlib's fixed pretrained network: it needs embedding_dim={EMBEDDING_DIM} "
                         f"and input_size={INPUT_SIZE}, got embedding_dim={embedding_dim}, input_size={input_size}")
    return DlibResNet()
