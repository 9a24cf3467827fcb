"""The CIFAR-10 training set resident on the device, each batch cropped and flipped in-graph (Keras).

``model.fit`` receives only the plan's 4 integers per example (``bench.data.plan_array``); the crop and
the flip are one gather inside the compiled train step. ``bench.data.augment_numpy`` is the
reference: same plan, same pixels, on every backend (tests/test_data.py).
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


class PlanAugment(keras.layers.Layer):
    """The padded training set as one non-trainable device variable; ``call(plan)`` gathers the batch.

    The input is ``plan_array`` rows, so only 4 ints per example cross from the host; the crop and
    the flip become one gather inside the compiled train step (``bench.data.augment_numpy`` is the
    reference: same plan, same pixels, tested). The variable is float32 whatever the dtype policy;
    the twin casts at its first layer, as it does for any float32 input.
    """

    def __init__(self, x_padded: np.ndarray, size: int = 32, **kwargs) -> None:
        super().__init__(dtype="float32", **kwargs)
        n, hp, wp, c = x_padded.shape
        self.geometry = (hp, wp, size)
        flat = np.ascontiguousarray(x_padded.reshape(n * hp * wp, c), dtype="float32")
        self.pixels = self.add_weight(shape=flat.shape, initializer=lambda shape, dtype=None: flat,
                                      trainable=False, name="pixels")

    def call(self, plan):
        hp, wp, size = self.geometry
        plan = ops.cast(plan, "int32")
        idx, cy, cx, flip = plan[:, 0], plan[:, 1], plan[:, 2], plan[:, 3]
        ar = ops.arange(size, dtype="int32")
        rows = cy[:, None] + ar[None, :]
        cols = ops.where(flip[:, None] > 0, cx[:, None] + (size - 1) - ar[None, :], cx[:, None] + ar[None, :])
        flat = idx[:, None, None] * (hp * wp) + rows[:, :, None] * wp + cols[:, None, :]
        return ops.take(self.pixels, flat, axis=0)  # (B, size, size, C)


class PlanModel(keras.Model):
    """``net`` fed by ``PlanAugment``: ``fit(plan_array(plans), labels)`` trains ``net`` on the device-resident set."""

    def __init__(self, net: keras.Model, x_padded: np.ndarray, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = net
        self.augment = PlanAugment(x_padded)

    def call(self, plan, training=False):
        return self.net(self.augment(plan), training=training)
