"""Shared Keras 3 layers that apply ``bench.specs.Defaults``: every layer named canonically.

Keras code here uses ``import keras`` (Keras 3) only; the backend is picked by ``KERAS_BACKEND``
before the first import. Tensors are channels-last (NHWC).
"""
from __future__ import annotations

import keras
from keras import layers

from bench.specs import DEFAULTS, Defaults, keras_name


def conv(x, filters, k, stride=1, bias=None, name="", d: Defaults = DEFAULTS):
    """k x k convolution padded symmetrically: ``same`` at stride 1, explicit ZeroPadding2D when strided."""
    pad = k // 2
    padding = "same"
    if stride > 1 and pad:
        x = layers.ZeroPadding2D(pad, name=keras_name(name) + "_pad")(x)
        padding = "valid"
    elif pad == 0:
        padding = "valid"
    return conv_layer(filters, k, stride, padding, bias, name, d)(x)


def conv_layer(filters, k, stride=1, padding="same", bias=None, name="", d: Defaults = DEFAULTS):
    return layers.Conv2D(filters, k, strides=stride, padding=padding,
                         use_bias=d.conv_bias if bias is None else bias,
                         kernel_initializer=d.conv_init, bias_initializer="zeros", name=keras_name(name))


def bn_layer(name, d: Defaults = DEFAULTS):
    return layers.BatchNormalization(axis=-1, momentum=d.bn_momentum, epsilon=d.bn_epsilon,
                                     name=keras_name(name))


def bn_relu(x, name, d: Defaults = DEFAULTS):
    x = bn_layer(name, d)(x)
    return layers.ReLU(name=keras_name(name) + "_relu")(x)


def head(x, num_classes, pre_bn, d: Defaults = DEFAULTS):
    """[BN-ReLU] + global average pool + dense logits (names ``head.bn``, ``head.fc``)."""
    if pre_bn:
        x = bn_relu(x, "head.bn", d)
    x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    return layers.Dense(num_classes, kernel_initializer=d.dense_init, bias_initializer="zeros",
                        name=keras_name("head.fc"))(x)


def inputs(spec):
    return keras.Input((spec.input_size, spec.input_size, spec.input_channels), name="input")
