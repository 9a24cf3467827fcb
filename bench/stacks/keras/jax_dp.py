"""Keras on JAX, data parallel: ``keras.distribution.DataParallel`` over a mesh of (host) devices.

On a CPU ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` gives N host devices; it must be set
before JAX is imported (``prepare_process``). BatchNorm: ``DataParallel`` shards the batch axis of one
jitted program, so ``ops.moments`` over axis 0 is a reduction over the global batch (XLA inserts the
all-reduce); the statistics are synchronised whatever the layer says (Keras' ``synchronized`` argument
is TensorFlow-only and refused on JAX). Hence one mode, ``sync``.
"""
from __future__ import annotations

import contextlib
import os

API = "keras.distribution.DataParallel"
COLLECTIVE = "XLA"
BN_MODES = ("sync",)
JIT = True


def prepare_process(replicas: int) -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={replicas}".strip()
    os.environ["JAX_ENABLE_X64"] = "1"  # float64 where Keras computes it (BN moments stay float32 on JAX)


def device_count() -> int:
    import jax
    return len(jax.devices())


@contextlib.contextmanager
def scope(replicas: int):
    import jax
    import keras
    dist = keras.distribution.DataParallel(devices=jax.devices()[:replicas])
    with dist.scope():
        yield


def adapt_optimizer(optimizer, replicas: int) -> None:
    """Nothing to adapt: one program over the global batch, the optimizer runs once."""


def set_bn_mode(model, bn: str) -> None:
    """Nothing to set: under ``DataParallel`` BatchNorm already sees the global batch."""
