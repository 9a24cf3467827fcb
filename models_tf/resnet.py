"""CIFAR ResNet v1 (6n+2), ResNet v2 (pre-activation bottleneck, 9n+2) and plain nets in Keras 3.

Functional builders in the style of the Keras 2 example ``cifar10_resnet.py`` (``resnet_v1`` /
``resnet_v2``), driven by ``bench.zoo.specs.ResNetSpec``; the PyTorch twin is ``models_torch/resnet.py``
and both use the same canonical layer names.
"""
from __future__ import annotations

import keras
from keras import layers

from bench.zoo.specs import ResNetSpec
from models_tf.common import bn_layer, bn_relu, conv, head, inputs


def _basic_block_v1(x, cin, cout, stride, spec, name):
    d = spec.defaults
    y = conv(x, cout, 3, stride, name=f"{name}.conv1", d=d)
    y = bn_relu(y, f"{name}.bn1", d)
    y = conv(y, cout, 3, name=f"{name}.conv2", d=d)
    y = bn_layer(f"{name}.bn2", d)(y)
    if spec.shortcuts:
        if stride != 1 or cin != cout:
            k = 1 if spec.shortcut == "conv1x1" else 3
            x = conv(x, cout, k, stride, bias=True, name=f"{name}.shortcut", d=d)
        y = layers.Add(name=f"{name}_add".replace(".", "_"))([x, y])
    return layers.ReLU(name=f"{name}_out".replace(".", "_"))(y)


def _bottleneck_v2(x, cin, width, cout, stride, preact, spec, name):
    d = spec.defaults
    y = bn_relu(x, f"{name}.bn1", d) if preact else x
    y = conv(y, width, 1, stride, name=f"{name}.conv1", d=d)
    y = conv(bn_relu(y, f"{name}.bn2", d), width, 3, name=f"{name}.conv2", d=d)
    y = conv(bn_relu(y, f"{name}.bn3", d), cout, 1, name=f"{name}.conv3", d=d)
    if stride != 1 or cin != cout:
        x = conv(x, cout, 1, stride, bias=True, name=f"{name}.shortcut", d=d)
    return layers.Add(name=f"{name}_add".replace(".", "_"))([x, y])


def build_resnet(spec: ResNetSpec) -> keras.Model:
    """Build the Keras twin of ``spec``."""
    d = spec.defaults
    inp = inputs(spec)
    x = bn_relu(conv(inp, spec.stem_width, 3, name="stem.conv", d=d), "stem.bn", d)
    cin = spec.stem_width
    for s, cout in enumerate(spec.stage_widths):
        for i in range(spec.blocks_per_stage):
            name = f"stage{s + 1}.block{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            if spec.version == 1:
                x = _basic_block_v1(x, cin, cout, stride, spec, name)
            else:
                x = _bottleneck_v2(x, cin, spec.bottleneck_width(s), cout, stride, not (s == 0 and i == 0),
                                   spec, name)
            cin = cout
    out = head(x, spec.num_classes, pre_bn=spec.version == 2, d=d)
    kind = "plain" if not spec.shortcuts else f"resnet_v{spec.version}"
    return keras.Model(inp, out, name=f"{kind}_{spec.depth}")
