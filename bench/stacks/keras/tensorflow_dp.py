"""Keras on TensorFlow, data parallel: ``tf.distribute.MirroredStrategy`` over (logical) devices.

On a CPU the replicas are logical CPU devices (``tf.config.set_logical_device_configuration``), set
before TensorFlow initialises its devices. BatchNorm is local (each replica's own slice) unless the
layer's ``synchronized`` is true: Keras' ``ops.moments(synchronized=True)`` then all-reduces sum, sum of
squares and count across the replicas. Note: the twin's unbiased moving-variance correction
(``TwinBatchNormalization``) counts the *local* elements, n/R, not n; the moving variance so differs
from PyTorch's ``SyncBatchNorm`` by a factor (n/R)/(n/R-1) against n/(n-1) of the batch variance.
"""
from __future__ import annotations

import contextlib

API = "tf.distribute.MirroredStrategy"
COLLECTIVE = "MirroredStrategy all-reduce"
BN_MODES = ("local", "sync")
JIT = False  # XLA cannot place a mirrored variable of another device (tf.function graph mode instead)
_STRATEGIES: dict = {}


def prepare_process(replicas: int) -> None:
    """Split the CPU into ``replicas`` logical devices (TensorFlow is imported here: call it first)."""
    import tensorflow as tf
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * replicas)


def device_count() -> int:
    import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    return len(gpus) or len(tf.config.list_logical_devices("CPU"))


def _strategy(replicas: int):
    import tensorflow as tf
    if replicas not in _STRATEGIES:
        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        devs = [d.name for d in tf.config.list_logical_devices(kind)][:replicas]
        _STRATEGIES[replicas] = tf.distribute.MirroredStrategy(devices=devs)
    return _STRATEGIES[replicas]


@contextlib.contextmanager
def scope(replicas: int):
    with _strategy(replicas).scope():
        yield


def adapt_optimizer(optimizer, replicas: int) -> None:
    """The twins' coupled L2 (``_CoupledL2.apply``: ``g += l2 * w``) runs in each replica *before* Keras'
    TensorFlow optimizer sums the replicas' gradients (``_all_reduce_sum_gradients``; each replica's loss
    is already divided by R), so R replicas would decay the weights R times: measured 2.6e-4 on a weight
    after 3 float64 steps (resnet8, 2 replicas). Each replica adds its 1/R share instead."""
    if getattr(optimizer, "l2", 0.0):
        optimizer.l2 = optimizer.l2 / replicas


def set_bn_mode(model, bn: str) -> None:
    from keras import layers
    for lyr in model._flatten_layers():
        if isinstance(lyr, layers.BatchNormalization):
            lyr.synchronized = bn == "sync"
