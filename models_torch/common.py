"""Shared PyTorch layers that apply ``bench.zoo.specs.Defaults`` (BN epsilon/momentum, init, conv bias)."""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.zoo.specs import DEFAULTS, TRUNCATED_NORMAL_STD, Defaults


def conv(cin: int, cout: int, k: int, stride: int = 1, bias: bool | None = None,
         d: Defaults = DEFAULTS) -> nn.Conv2d:
    """k x k convolution with symmetric 'same' padding (k // 2 on every side)."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2,
                     bias=d.conv_bias if bias is None else bias)


def bn(c: int, d: Defaults = DEFAULTS) -> nn.BatchNorm2d:
    """BatchNorm2d with the spec's epsilon and momentum; its running_var update is the unbiased one
    (``Defaults.bn_moving_variance``), PyTorch's own rule."""
    if d.bn_moving_variance != "unbiased":
        raise ValueError(f"bn_moving_variance {d.bn_moving_variance!r}: PyTorch's BatchNorm2d folds the unbiased variance")
    return nn.BatchNorm2d(c, eps=d.bn_epsilon, momentum=d.torch_bn_momentum)


def init_weights(model: nn.Module, d: Defaults = DEFAULTS) -> None:
    """Keras-equivalent initialisation: he_normal convs, glorot_uniform dense, zero biases, BN 1/0."""
    assert d.conv_init == "he_normal" and d.dense_init == "glorot_uniform", "unsupported init in spec"
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)


class Head(nn.Module):
    """Global average pool + linear classifier (optionally after a final BN-ReLU)."""

    def __init__(self, c: int, num_classes: int, pre_bn: bool, d: Defaults = DEFAULTS) -> None:
        super().__init__()
        self.bn = bn(c, d) if pre_bn else None
        self.bn_relu = nn.ReLU() if pre_bn else None
        self.pool = GlobalAvgPool2d()
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            x = self.bn_relu(self.bn(x))
        return self.fc(self.pool(x))


class GlobalAvgPool2d(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over H and W (Keras' ``layers.GlobalAveragePooling2D``, the head's ``pool``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class Add(nn.Module):
    """``a + b`` as a module (Keras' ``layers.Add``), so that profiles and memory counts name it as the Keras twin."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b
