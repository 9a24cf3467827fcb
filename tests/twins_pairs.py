"""A second twins file for the tests (``tests/test_byo_twins.py``): ``branchy``, a pair unlike the example's (its
add joins a concatenation, not a residual block), and broken copies of it, each broken in one place:

- ``broken_eps``: the Keras stem BatchNorm has epsilon 1e-3 (Keras' default), torch 1e-5;
- ``broken_same``: the Keras stride-2 conv pads 'same' (bottom/right only), torch padding=1 (every side);
- ``broken_flatten``: both flatten a 4x4 map before the dense layer (NHWC in Keras, NCHW in torch);
- ``broken_orphan``: torch's classifier has a bias, Keras' none (a tensor with no partner);
- ``broken_momentum``: the Keras stem BatchNorm has momentum 0.1 (PyTorch's number, not Keras' 0.9).
"""
import keras
import torch
from keras import layers
from torch import nn

from models_tf.common import TwinBatchNormalization


class Branchy(nn.Module):
    def __init__(self, flatten: bool = False, head_bias: bool = True):
        super().__init__()
        self.flatten = flatten
        self.parts = nn.ModuleDict({
            "first": nn.Conv2d(3, 12, 3, padding=1, bias=False), "first_bn": nn.BatchNorm2d(12),
            "shrink": nn.Conv2d(12, 24, 3, stride=2, padding=1, bias=False), "shrink_bn": nn.BatchNorm2d(24),
            "p1": nn.Conv2d(24, 8, 1, bias=False), "p3": nn.Conv2d(24, 16, 3, padding=1, bias=False),
            "merge_bn": nn.BatchNorm2d(24),
        })
        self.classifier = nn.Linear(24 * 16 if flatten else 24, 10, bias=head_bias)

    def forward(self, x):
        p = self.parts
        x = torch.relu(p["first_bn"](p["first"](x)))
        x = torch.relu(p["shrink_bn"](p["shrink"](x)))
        y = torch.cat([p["p1"](x), p["p3"](x)], dim=1)
        x = torch.relu(p["merge_bn"](y) + x)
        if self.flatten:
            return self.classifier(torch.flatten(nn.functional.avg_pool2d(x, 4), 1))
        return self.classifier(x.mean(dim=(2, 3)))


def branchy_keras(eps: float = 1e-5, same: bool = False, flatten: bool = False, head_bias: bool = True,
                  momentum: float = 0.9):
    inp = keras.Input((32, 32, 3), name="pixels")
    x = layers.Conv2D(12, 3, padding="same", use_bias=False, name="k_a")(inp)
    x = layers.ReLU()(TwinBatchNormalization(momentum=momentum, epsilon=eps, name="k_a_norm")(x))
    if same:
        x = layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False, name="k_b")(x)
    else:
        x = layers.Conv2D(24, 3, strides=2, use_bias=False, name="k_b")(layers.ZeroPadding2D(1)(x))
    x = layers.ReLU()(TwinBatchNormalization(momentum=0.9, epsilon=1e-5, name="k_b_norm")(x))
    y = layers.Concatenate()([layers.Conv2D(8, 1, use_bias=False, name="k_one")(x),
                              layers.Conv2D(16, 3, padding="same", use_bias=False, name="k_three")(x)])
    x = layers.ReLU()(layers.Add()([TwinBatchNormalization(momentum=0.9, epsilon=1e-5, name="k_cat_norm")(y), x]))
    x = layers.Flatten()(layers.AveragePooling2D(4)(x)) if flatten else layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(10, use_bias=head_bias, name="k_out")(x))


TWINS = {
    "branchy": {"torch": Branchy, "keras": branchy_keras, "description": "the tests' second pair"},
    "broken_eps": (Branchy, lambda: branchy_keras(eps=1e-3)),
    "broken_same": (Branchy, lambda: branchy_keras(same=True)),
    "broken_flatten": (lambda: Branchy(flatten=True), lambda: branchy_keras(flatten=True)),
    "broken_orphan": (Branchy, lambda: branchy_keras(head_bias=False)),
    "broken_momentum": (Branchy, lambda: branchy_keras(momentum=0.1)),
}
