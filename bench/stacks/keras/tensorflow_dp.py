"""Keras on TensorFlow, data parallel: ``tf.distribute.MirroredStrategy`` over (logical) devices.

On a CPU the replicas are logical CPU devices (``tf.config.set_logical_device_configuration``), set
before TensorFlow initialises its devices. BatchNorm is local (each replica's own slice) unless the
layer's ``synchronized`` is true: Keras' ``ops.moments(synchronized=True)`` then all-reduces sum, sum of
squares and count across the replicas. The twin's unbiased moving-variance correction
(``TwinBatchNormalization``) counts the elements of its input, the replica's n/R, not the n the
synchronised moments were taken over (measured: moving statistics 2.4e-2 from 1 replica after 3 steps,
resnet8 8x8, global batch 8), so ``set_bn_mode`` gives it the global count.
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
    """``sync``: Keras' ``synchronized`` moments, and the twin's unbiased moving-variance correction over the
    global count (R x the replica's elements; the replicas' slices are equal), as ``SyncBatchNorm`` does."""
    from keras import layers
    for lyr in model._flatten_layers():
        if isinstance(lyr, layers.BatchNormalization):
            lyr.synchronized = bn == "sync"
            if bn == "sync" and hasattr(lyr, "update_moving_statistics"):
                lyr.update_moving_statistics = _global_count(lyr.update_moving_statistics)


def _global_count(update):
    import tensorflow as tf

    def update_moving_statistics(mean, variance, count):
        ctx = tf.distribute.get_replica_context()
        return update(mean, variance, count * (ctx.num_replicas_in_sync if ctx else 1))
    return update_moving_statistics
