"""CIFAR DenseNet and DenseNet-BC (Huang et al. 2017, arXiv 1608.06993) in PyTorch.

Built from ``bench.zoo.specs.DenseNetSpec``. The memory-efficient variant checkpoints the
concat + BN + ReLU + conv1 of every layer (Pleiss et al. 2017, arXiv 1707.06990; torchvision's
``memory_efficient=True``), so the concatenated input is recomputed in the backward pass instead of
stored. Canonical names: ``stem.conv``, ``block{b}.layer{i}.bn1|conv1|bn2|conv2``,
``transition{b}.bn|conv``, ``head.bn``, ``head.fc``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from bench.zoo.specs import DenseNetSpec
from models_torch.common import Head, bn, conv, init_weights


class DenseLayer(nn.Module):
    """BN-ReLU-conv1 on the concatenation of all earlier maps; BC adds BN-ReLU-conv3x3 after a 1x1 conv1."""

    def __init__(self, cin: int, spec: DenseNetSpec) -> None:
        super().__init__()
        d, k = spec.defaults, spec.growth_rate
        self.bn1 = bn(cin, d)
        if spec.bottleneck:
            self.conv1 = conv(cin, 4 * k, 1, d=d)
            self.bn2 = bn(4 * k, d)
            self.conv2 = conv(4 * k, k, 3, d=d)
        else:
            self.conv1 = conv(cin, k, 3, d=d)
            self.bn2 = self.conv2 = None
        self.memory_efficient = spec.memory_efficient
        self._recomputing = False

    def _concat_bn_relu_conv1(self, *feats: torch.Tensor) -> torch.Tensor:
        x = torch.cat(feats, 1)
        if self._recomputing:
            # the backward pass re-runs this segment: the same op on throw-away copies of the running
            # statistics, so the output is the forward pass's and the real statistics move once per step
            bn = self.bn1
            x = F.batch_norm(x, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, True,
                             bn.momentum, bn.eps)
        else:
            x = self.bn1(x)
            self._recomputing = self.memory_efficient and self.training
        return self.conv1(torch.relu(x))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in feats):
            self._recomputing = False
            y = checkpoint(self._concat_bn_relu_conv1, *feats, use_reentrant=False)
        else:
            self._recomputing = False
            y = self._concat_bn_relu_conv1(*feats)
            self._recomputing = False
        if self.conv2 is not None:
            y = self.conv2(torch.relu(self.bn2(y)))
        return y


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, cin: int, spec: DenseNetSpec) -> None:
        super().__init__(OrderedDict(
            (f"layer{i}", DenseLayer(cin + i * spec.growth_rate, spec)) for i in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


class Transition(nn.Module):
    def __init__(self, cin: int, cout: int, spec: DenseNetSpec) -> None:
        super().__init__()
        self.bn = bn(cin, spec.defaults)
        self.conv = conv(cin, cout, 1, d=spec.defaults)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool2d(self.conv(torch.relu(self.bn(x))), 2)


class DenseNetCifar(nn.Module):
    def __init__(self, spec: DenseNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Module()
        self.stem.conv = conv(spec.input_channels, spec.stem_width, 3, d=spec.defaults)
        plan = spec.channel_plan()
        for b, ((cin, cout), n) in enumerate(zip(plan, spec.blocks), start=1):
            self.add_module(f"block{b}", DenseBlock(n, cin, spec))
            if b < len(plan):
                self.add_module(f"transition{b}", Transition(cout, spec.transition_width(cout), spec))
        self.head = Head(plan[-1][1], spec.num_classes, pre_bn=True, d=spec.defaults)
        init_weights(self, spec.defaults)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem.conv(x)
        for b in range(1, len(self.spec.blocks) + 1):
            x = getattr(self, f"block{b}")(x)
            if b < len(self.spec.blocks):
                x = getattr(self, f"transition{b}")(x)
        return self.head(x)


def build_densenet(spec: DenseNetSpec) -> DenseNetCifar:
    """Build the PyTorch twin of ``spec``."""
    return DenseNetCifar(spec)
