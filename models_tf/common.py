"""Shared Keras 3 layers that apply ``bench.zoo.specs.Defaults``: every layer named canonically.

Keras code here uses ``import keras`` (Keras 3) only; the backend is picked by ``KERAS_BACKEND``
before the first import. Tensors are channels-last (NHWC).
"""
from __future__ import annotations

import keras
from keras import backend, layers, ops

from bench.zoo.specs import DEFAULTS, Defaults, keras_name


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


@keras.saving.register_keras_serializable("twinbench")
class TwinBatchNormalization(layers.BatchNormalization):
    """Keras' BatchNormalization with the spec's moving-variance rule (``Defaults.bn_moving_variance``).

    In training mode the batch is normalised with the biased batch variance, as in Keras and PyTorch,
    but the moving variance folds in the *unbiased* one (x n / (n - 1), n = elements per channel),
    as PyTorch's ``running_var`` does. Everything else (float32 statistics under mixed precision,
    inference, masks, renorm) is Keras' own code.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        x = ops.cast(inputs, backend.result_type(inputs.dtype, "float32"))  # float32 under mixed precision
        mean, variance = self._moments(x, None)
        self.update_moving_statistics(mean, variance, count_per_channel(x, self.axis))
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        y = ops.batch_normalization(x, mean, variance, axis=self.axis, offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(y, self.compute_dtype)

    def update_moving_statistics(self, mean, variance, count):
        """Fold a batch's mean and *biased* variance over ``count`` elements per channel into the moving
        statistics: ``moving = m * moving + (1 - m) * batch`` with the variance made unbiased."""
        m = self.momentum
        mm, mv = self.moving_mean, self.moving_variance
        count = ops.cast(count, mv.dtype)
        unbiased = ops.cast(variance, mv.dtype) * (count / ops.maximum(count - 1.0, 1.0))
        mm.assign(mm * m + ops.cast(mean, mm.dtype) * (1.0 - m))
        mv.assign(mv * m + unbiased * (1.0 - m))


def count_per_channel(x, axis=-1):
    """Elements per channel a BatchNorm reduces over (batch x height x width), as a tensor (dynamic batch)."""
    channels = x.shape[axis]
    return ops.cast(ops.size(x), "float32") / float(channels)


def bn_layer(name, d: Defaults = DEFAULTS):
    if d.bn_moving_variance != "unbiased":
        raise ValueError(f"bn_moving_variance {d.bn_moving_variance!r}: only 'unbiased' (PyTorch's rule) is built")
    return TwinBatchNormalization(axis=-1, momentum=d.bn_momentum, epsilon=d.bn_epsilon, name=keras_name(name))


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
