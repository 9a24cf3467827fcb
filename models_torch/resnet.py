"""CIFAR ResNet v1 (6n+2), ResNet v2 (pre-activation bottleneck, 9n+2) and plain nets, in PyTorch.

Built from ``bench.zoo.specs.ResNetSpec``; layout follows the Keras 2 example ``cifar10_resnet.py``
(He et al. 2015, arXiv 1512.03385; He et al. 2016, arXiv 1603.05027). Canonical module names:
``stem.conv``, ``stage{1..3}.block{i}.conv1|bn1|...|shortcut``, ``head.bn``, ``head.fc``. The activations, the
shortcut's add and the pooling are modules too, named as the Keras twin's layers (``stage1.block0.bn1_relu``,
``.add``, ``.out``; ``stem.bn_relu``, ``head.pool``): no parameters, so weight transfer is unchanged, and a
per-layer profile or memory count names them as the Keras twin does."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from bench.zoo.specs import ResNetSpec
from models_torch.common import Add, Head, bn, conv, init_weights


class Stem(nn.Module):
    def __init__(self, cin: int, cout: int, spec: ResNetSpec) -> None:
        super().__init__()
        self.conv = conv(cin, cout, 3, d=spec.defaults)
        self.bn = bn(cout, spec.defaults)
        self.bn_relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_relu(self.bn(self.conv(x)))


class BasicBlockV1(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -ReLU. The projection shortcut has a bias and no BN."""

    def __init__(self, cin: int, cout: int, stride: int, spec: ResNetSpec) -> None:
        super().__init__()
        d = spec.defaults
        self.conv1 = conv(cin, cout, 3, stride, d=d)
        self.bn1 = bn(cout, d)
        self.bn1_relu = nn.ReLU()
        self.conv2 = conv(cout, cout, 3, d=d)
        self.bn2 = bn(cout, d)
        self.use_shortcut = spec.shortcuts
        self.shortcut = None
        if spec.shortcuts and (stride != 1 or cin != cout):
            k = 1 if spec.shortcut == "conv1x1" else 3
            self.shortcut = conv(cin, cout, k, stride, bias=True, d=d)
        self.add = Add() if spec.shortcuts else None
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn1_relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.add is not None:
            y = self.add(x if self.shortcut is None else self.shortcut(x), y)
        return self.out(y)


class BottleneckV2(nn.Module):
    """Pre-activation bottleneck: [BN-ReLU]-conv1x1(stride)-BN-ReLU-conv3x3-BN-ReLU-conv1x1 + shortcut.

    As in the Keras example, the first block of the first stage skips the pre-activation (the stem
    already applied BN-ReLU) and the projection shortcut (conv1x1 with bias) reads the raw input.
    """

    def __init__(self, cin: int, width: int, cout: int, stride: int, preact: bool, spec: ResNetSpec) -> None:
        super().__init__()
        d = spec.defaults
        self.bn1 = bn(cin, d) if preact else None
        self.bn1_relu = nn.ReLU() if preact else None
        self.conv1 = conv(cin, width, 1, stride, d=d)
        self.bn2 = bn(width, d)
        self.bn2_relu = nn.ReLU()
        self.conv2 = conv(width, width, 3, d=d)
        self.bn3 = bn(width, d)
        self.bn3_relu = nn.ReLU()
        self.conv3 = conv(width, cout, 1, d=d)
        self.shortcut = conv(cin, cout, 1, stride, bias=True, d=d) if (stride != 1 or cin != cout) else None
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.bn1 is None else self.bn1_relu(self.bn1(x))
        y = self.conv1(y)
        y = self.conv2(self.bn2_relu(self.bn2(y)))
        y = self.conv3(self.bn3_relu(self.bn3(y)))
        return self.add(x if self.shortcut is None else self.shortcut(x), y)


class ResNetCifar(nn.Module):
    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        n = spec.blocks_per_stage
        self.stem = Stem(spec.input_channels, spec.stem_width, spec)
        cin = spec.stem_width
        for s, cout in enumerate(spec.stage_widths):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for i in range(n):
                if spec.version == 1:
                    stride = 2 if (s > 0 and i == 0) else 1
                    blocks[f"block{i}"] = BasicBlockV1(cin, cout, stride, spec)
                else:
                    stride = 2 if (s > 0 and i == 0) else 1
                    preact = not (s == 0 and i == 0)
                    blocks[f"block{i}"] = BottleneckV2(cin, spec.bottleneck_width(s), cout, stride, preact, spec)
                cin = cout
            self.add_module(f"stage{s + 1}", nn.Sequential(blocks))
        self.head = Head(cin, spec.num_classes, pre_bn=spec.version == 2, d=spec.defaults)
        init_weights(self, spec.defaults)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.head(x)


def build_resnet(spec: ResNetSpec) -> ResNetCifar:
    """Build the PyTorch twin of ``spec``."""
    return ResNetCifar(spec)
