"""Keras pieces of the training loop: the recipe's schedule in-graph, coupled weight decay, the plan feeder.

Imported only in processes that train a Keras twin (it imports keras, so KERAS_BACKEND must be set).
"""
from __future__ import annotations

import dataclasses
import time

import keras
from keras import ops

from bench.data import augment_numpy
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
    pass


@keras.saving.register_keras_serializable("twinbench")
class CoupledAdam(_CoupledL2, keras.optimizers.Adam):
    pass


class PlanDataset(keras.utils.PyDataset):
    """Feeds ``model.fit`` the batches of one epoch's plan, augmented on the host with NumPy."""

    def __init__(self, x_padded, y, plans, **kwargs) -> None:
        super().__init__(**kwargs)
        self.x, self.y, self.plans = x_padded, y, plans

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, i):
        p = self.plans[i]
        return augment_numpy(self.x, p), self.y[p.index]


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


def custom_objects() -> dict:
    from models_tf.densenet import ConcatBNReLUConv
    return {"RecipeSchedule": RecipeSchedule, "CoupledSGD": CoupledSGD, "CoupledAdam": CoupledAdam,
            "ConcatBNReLUConv": ConcatBNReLUConv}
