"""The models of the convergence study, sized for 8x8 and 28x28 digits and a single CPU
thread. Each is chosen because its initialisation matters or because it is the paper's:

- ``mlp``: 10 linear layers (9 hidden ReLU layers of width 128), no normalisation, no
  dropout: the signal's scale at the output is set by the initial weights alone;
- ``alexnet``: the paper's AlexNet shape scaled down: five ReLU convolutions (16, 32, 48,
  48, 32 channels) with max-pooling after the first (28x28 inputs only), second and fifth,
  then a classifier of two ReLU layers of 128 with dropout 0.5 before each, and a linear
  output; no normalisation, as in AlexNet;
- ``resnet`` / ``resnet_bn``: the paper's CIFAR ResNet-32 (three stages of 5 basic blocks,
  16/32/64 channels, parameter-free shortcuts that subsample and zero-pad) scaled down to
  ResNet-14: three stages of 2 blocks, 8/16/32 channels, without and with BatchNorm; a
  28x28 input enters through a stride-2 stem so that the stages run at 14/7/4 pixels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("mlp", "alexnet", "resnet", "resnet_bn")
MLP_DEPTH, MLP_WIDTH = 10, 128
ALEXNET_CHANNELS, ALEXNET_HIDDEN, ALEXNET_DROPOUT = (16, 32, 48, 48, 32), 128, 0.5
RESNET_BLOCKS, RESNET_CHANNELS = 2, (8, 16, 32)


def mlp(image_size: int, classes: int) -> nn.Module:
    """The deep ReLU MLP: MLP_DEPTH linear layers of MLP_WIDTH, ReLU between them."""
    layers: list[nn.Module] = [nn.Flatten()]
    width_in = image_size * image_size
    for _ in range(MLP_DEPTH - 1):
        layers += [nn.Linear(width_in, MLP_WIDTH), nn.ReLU()]
        width_in = MLP_WIDTH
    layers.append(nn.Linear(width_in, classes))
    return nn.Sequential(*layers)


def alexnet(image_size: int, classes: int) -> nn.Module:
    """The scaled AlexNet: conv-ReLU ×5 with max-pooling, then dropout-FC-ReLU ×2, FC.
    The first pooling is kept only for inputs of 16 pixels or more, so an 8x8 digit still
    has 2x2 pixels left for the classifier."""
    c1, c2, c3, c4, c5 = ALEXNET_CHANNELS
    big = image_size >= 16
    features = [nn.Conv2d(1, c1, 5 if big else 3, padding=2 if big else 1), nn.ReLU()]
    if big:
        features.append(nn.MaxPool2d(2))
    features += [
        nn.Conv2d(c1, c2, 5 if big else 3, padding=2 if big else 1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ]
    side = image_size // (8 if big else 4)
    return nn.Sequential(
        *features, nn.Flatten(),
        nn.Dropout(ALEXNET_DROPOUT), nn.Linear(c5 * side * side, ALEXNET_HIDDEN), nn.ReLU(),
        nn.Dropout(ALEXNET_DROPOUT), nn.Linear(ALEXNET_HIDDEN, ALEXNET_HIDDEN), nn.ReLU(),
        nn.Linear(ALEXNET_HIDDEN, classes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions on the residual branch (BatchNorm after each when `norm`), ReLU
    after the first and after the sum; the shortcut is the identity, or, where the block
    halves the resolution and widens, a stride-2 subsample zero-padded to the new width
    (ResNet's option A, which has no weights to initialise)."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=not norm)
        self.bn1 = nn.BatchNorm2d(channels_out) if norm else nn.Identity()
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=not norm)
        self.bn2 = nn.BatchNorm2d(channels_out) if norm else nn.Identity()
        self.stride, self.pad = stride, channels_out - channels_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.pad))
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """CIFAR-style ResNet of 6·RESNET_BLOCKS + 2 layers: stem conv, three stages of basic
    blocks (the 2nd and 3rd start with stride 2), global average pooling, linear output."""

    def __init__(self, image_size: int, classes: int, norm: bool) -> None:
        super().__init__()
        c1, c2, c3 = RESNET_CHANNELS
        self.stem = nn.Conv2d(1, c1, 3, 2 if image_size >= 16 else 1, 1, bias=not norm)
        self.stem_bn = nn.BatchNorm2d(c1) if norm else nn.Identity()
        blocks = []
        for stage, (c_in, c_out) in enumerate(((c1, c1), (c1, c2), (c2, c3))):
            for b in range(RESNET_BLOCKS):
                first = b == 0
                blocks.append(BasicBlock(c_in if first else c_out, c_out, 2 if first and stage else 1, norm))
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem_bn(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def build(name: str, image_size: int, classes: int) -> nn.Module:
    """Model `name` (one of MODELS) for square inputs of `image_size` pixels."""
    if name == "mlp":
        return mlp(image_size, classes)
    if name == "alexnet":
        return alexnet(image_size, classes)
    if name in ("resnet", "resnet_bn"):
        return ResNet(image_size, classes, norm=name == "resnet_bn")
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
