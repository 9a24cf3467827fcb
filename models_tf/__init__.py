"""Keras 3 twins of the TwinBench architectures: ``build(spec) -> keras.Model``.

Set ``KERAS_BACKEND`` (tensorflow, jax or torch) before the first ``import keras``.
"""
from __future__ import annotations

from bench.zoo.specs import DenseNetSpec, ModelSpec, ResNetSpec


def build(spec: ModelSpec):
    """Build the Keras twin of a framework-neutral spec."""
    if isinstance(spec, ResNetSpec):
        from models_tf.resnet import build_resnet
        return build_resnet(spec)
    if isinstance(spec, DenseNetSpec):
        from models_tf.densenet import build_densenet
        return build_densenet(spec)
    raise TypeError(f"no Keras builder for {type(spec).__name__}")
