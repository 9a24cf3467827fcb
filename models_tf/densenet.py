"""CIFAR DenseNet and DenseNet-BC (Huang et al. 2017, arXiv 1608.06993) in Keras 3.

Driven by ``bench.zoo.specs.DenseNetSpec``; the PyTorch twin is ``models_torch/densenet.py``. Each dense
layer's concat + BN + ReLU + conv1 is one ``ConcatBNReLUConv`` layer, so the memory-efficient
variant can recompute exactly that segment in the backward pass with ``keras.remat`` (what
``keras.RematScope(mode="full")`` does to a layer's call), the same boundary as PyTorch's checkpoint.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from bench.zoo.specs import DEFAULTS, DenseNetSpec, keras_name
from models_tf.common import bn_layer, bn_relu, conv, conv_layer, count_per_channel, head, inputs


@keras.saving.register_keras_serializable("twinbench")
class ConcatBNReLUConv(keras.layers.Layer):
    """conv1(relu(bn1(concat(feats)))); with ``memory_efficient`` the segment is rematerialised."""

    def __init__(self, filters, kernel_size, bn_name, conv_name, memory_efficient=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size
        self.bn_name, self.conv_name = bn_name, conv_name
        self.memory_efficient = memory_efficient
        self.bn = bn_layer(bn_name, DEFAULTS)
        self.conv = conv_layer(filters, kernel_size, 1, "same", None, conv_name, DEFAULTS)

    def build(self, input_shape):
        shapes = list(input_shape)
        channels = sum(s[-1] for s in shapes)
        full = tuple(shapes[0][:-1]) + (channels,)
        self.bn.build(full)
        self.conv.build(full)

    def _segment(self, *feats, training=None):
        x = feats[0] if len(feats) == 1 else ops.concatenate(list(feats), axis=-1)
        return self.conv(ops.relu(self.bn(x, training=training)))

    def _pure_segment(self, *feats):
        """Training-mode segment without side effects (remat may run it twice): returns the batch moments
        for the caller to fold into the moving statistics once, as BatchNormalization does."""
        x = feats[0] if len(feats) == 1 else ops.concatenate(list(feats), axis=-1)
        dtype = x.dtype
        x32 = ops.cast(x, "float32") if dtype in ("float16", "bfloat16") else x
        mean, var = ops.moments(x32, axes=[0, 1, 2])
        y = ops.batch_normalization(x32, mean, var, axis=-1, offset=self.bn.beta, scale=self.bn.gamma,
                                    epsilon=self.bn.epsilon)
        return self.conv(ops.relu(ops.cast(y, dtype))), mean, var

    def call(self, feats, training=None):
        feats = list(feats) if isinstance(feats, (list, tuple)) else [feats]
        if self.memory_efficient and training:
            y, mean, var = keras.remat(self._pure_segment)(*feats)
            # the same rule as every other BN of the twins (unbiased moving variance, bench.zoo.specs.Defaults)
            self.bn.update_moving_statistics(mean, var, count_per_channel(feats[0]))
            return y
        return self._segment(*feats, training=training)

    def compute_output_shape(self, input_shape):
        shapes = list(input_shape) if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else [input_shape]
        return tuple(shapes[0][:-1]) + (self.filters,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "bn_name": self.bn_name, "conv_name": self.conv_name,
                "memory_efficient": self.memory_efficient}


def _dense_layer(feats, spec, name):
    k = spec.growth_rate
    width, ksize = (4 * k, 1) if spec.bottleneck else (k, 3)
    y = ConcatBNReLUConv(width, ksize, f"{name}.bn1", f"{name}.conv1", spec.memory_efficient,
                         name=keras_name(name) + "_concat_bn1_conv1")(feats)
    if spec.bottleneck:
        y = conv(bn_relu(y, f"{name}.bn2", spec.defaults), k, 3, name=f"{name}.conv2", d=spec.defaults)
    return y


def build_densenet(spec: DenseNetSpec) -> keras.Model:
    """Build the Keras twin of ``spec``."""
    d = spec.defaults
    inp = inputs(spec)
    x = conv(inp, spec.stem_width, 3, name="stem.conv", d=d)
    plan = spec.channel_plan()
    for b, ((_, cout), n) in enumerate(zip(plan, spec.blocks), start=1):
        feats = [x]
        for i in range(n):
            feats.append(_dense_layer(feats, spec, f"block{b}.layer{i}"))
        x = layers.Concatenate(axis=-1, name=f"block{b}_out")(feats)
        if b < len(plan):
            t = f"transition{b}"
            x = conv(bn_relu(x, f"{t}.bn", d), spec.transition_width(cout), 1, name=f"{t}.conv", d=d)
            x = layers.AveragePooling2D(2, name=f"{t}_pool")(x)
    out = head(x, spec.num_classes, pre_bn=True, d=d)
    suffix = "_memeff" if spec.memory_efficient else ""
    return keras.Model(inp, out, name=f"densenet{'_bc' if spec.bottleneck else ''}{spec.depth}{suffix}")
