"""Keras pieces of the training loop: the recipe's schedule in-graph, coupled weight decay, the dataset
resident on the device with the augmentation in-graph, checkpoints.

Imported only in processes that train a Keras twin (it imports keras, so KERAS_BACKEND must be set).
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
from keras import ops

from bench.recipes import Recipe


@keras.saving.register_keras_serializable("twinbench")
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``Recipe.lr_at`` evaluated in-graph from the optimizer's iteration count."""

    def __init__(self, recipe: Recipe | dict, steps_per_epoch: int) -> None:
        if isinstance(recipe, dict):
            recipe = Recipe(**{**recipe, "milestones": tuple(tuple(m) for m in recipe["milestones"])})
        self.recipe, self.steps_per_epoch = recipe, int(steps_per_epoch)

    def __call__(self, step):
        r, spe = self.recipe, float(self.steps_per_epoch)
        s = ops.cast(step, "float32")
        if r.schedule == "onecycle":
            total = r.epochs * spe
            peak = max(1.0, r.warmup * total)
            up = r.lr * (0.1 + 0.9 * s / peak)
            down = r.lr * ops.maximum(0.0, (total - s) / max(1.0, total - peak))
            return ops.where(s < peak, up, down)
        lr = ops.full_like(s, r.lr)
        for start, f in r.milestone_epochs():
            lr = ops.where(s >= start * spe, ops.full_like(s, r.lr * f), lr)
        return lr

    def get_config(self):
        return {"recipe": dataclasses.asdict(self.recipe), "steps_per_epoch": self.steps_per_epoch}


class _CoupledL2:
    """grad += l2 * w for every trainable weight before the update: torch's ``weight_decay`` semantics."""

    def __init__(self, *args, l2: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.l2 = float(l2)

    def apply(self, grads, trainable_variables=None):
        if self.l2:
            variables = trainable_variables if trainable_variables is not None else self._trainable_variables
            grads = [g if g is None else ops.add(g, ops.multiply(ops.cast(v, g.dtype), self.l2))
                     for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable("twinbench")
class CoupledSGD(_CoupledL2, keras.optimizers.SGD):
    """SGD with PyTorch's momentum convention: the buffer accumulates gradients and the *current* lr
    scales the step (``b = m * b + g; w -= lr * b``; Nesterov: ``w -= lr * (g + m * b)``).

    Keras' SGD folds the lr into its velocity (``v = m * v - lr * g; w += v``), which is the same only
    while the lr is constant: under a schedule that moves every step (``onecycle``) or at a milestone
    the two drift apart (issue #14: 1.6e-2 on a weight after 2 one-cycle steps in float64).
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(g, lr))
            return
        b = self.momentums[self._get_variable_index(variable)]
        m = ops.cast(self.momentum, variable.dtype)
        self.assign(b, ops.add(ops.multiply(b, m), g))
        step = ops.add(g, ops.multiply(b, m)) if self.nesterov else b
        self.assign_sub(variable, ops.multiply(step, lr))


@keras.saving.register_keras_serializable("twinbench")
class CoupledAdam(_CoupledL2, keras.optimizers.Adam):
    """Adam with PyTorch's epsilon: ``w -= lr * m_hat / (sqrt(v_hat) + eps)``, eps 1e-8.

    Keras adds its epsilon (default 1e-7) to ``sqrt(v)`` before the bias correction, i.e. it divides by
    ``sqrt(v_hat) + eps / sqrt(1 - beta_2^t)``: a different, step-dependent epsilon.
    """

    def __init__(self, *args, epsilon: float = 1e-8, **kwargs) -> None:
        super().__init__(*args, epsilon=epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        t = ops.cast(self.iterations + 1, variable.dtype)
        b1, b2 = ops.cast(self.beta_1, variable.dtype), ops.cast(self.beta_2, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(g, m), 1 - b1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(g), v), 1 - b2))
        denom = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(1 - ops.power(b2, t))), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / (1 - ops.power(b1, t))), denom))


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


def save_checkpoint(path: str, net: keras.Model, optimizer, epoch: int) -> None:
    """The twin's weights, the optimizer's variables and the epoch in one ``.npz``, replaced atomically."""
    store: dict = {}
    optimizer.save_own_variables(store)
    arrays = {f"w{i}": keras.ops.convert_to_numpy(w) for i, w in enumerate(net.weights)}
    arrays.update({f"o{k}": np.asarray(v) for k, v in store.items()})
    from bench.writes import atomic_write  # a full disk: ResultsWriteError, the previous checkpoint stays
    atomic_write(path, lambda tmp: np.savez(tmp, epoch=np.int64(epoch), **arrays), tmp_suffix=".tmp.npz")


def load_checkpoint(path: str, net: keras.Model, optimizer) -> int:
    """Restore what ``save_checkpoint`` wrote into a built ``net`` and an optimizer built on its variables."""
    with np.load(path) as ck:
        stored = sorted((k for k in ck.files if k.startswith("w")), key=lambda k: int(k[1:]))
        shapes = [tuple(ck[k].shape) for k in stored]
        if shapes != [tuple(v.shape) for v in net.weights]:
            raise ValueError(f"checkpoint {path} holds {len(stored)} weights that do not match {net.name} "
                             f"({len(net.weights)} weights): a checkpoint of another model? Delete it to start over.")
        weights = [ck[k] for k in stored]
        store = {k[1:]: ck[k] for k in ck.files if k.startswith("o")}
        epoch = int(ck["epoch"])
    for v, w in zip(net.weights, weights, strict=True):
        v.assign(w)
    optimizer.load_own_variables(store)
    return epoch


class ProgressCallback(keras.callbacks.Callback):
    """A tqdm bar per epoch with loss, accuracy and images/s (the same bar as the PyTorch loop)."""

    def __init__(self, enabled: bool, steps: int, desc: str, batch_size: int) -> None:
        super().__init__()
        self.enabled, self.steps, self.desc, self.batch_size = enabled, steps, desc, batch_size

    def on_epoch_begin(self, epoch, logs=None):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.steps, desc=self.desc, unit="step", leave=False, disable=not self.enabled,
                        dynamic_ncols=True)
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.enabled and (batch % 20 == 0 or batch == self.steps - 1) and logs:
            img_s = (batch + 1) * self.batch_size / (time.perf_counter() - self.t0)
            self.bar.set_postfix(loss=f"{float(logs.get('loss', 0)):.3f}",
                                 acc=f"{float(logs.get('accuracy', 0)):.3f}", img_s=f"{img_s:.0f}")
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()
