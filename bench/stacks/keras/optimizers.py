"""Keras optimizers that follow the twins' conventions (PyTorch's rules), the recipe's schedule in-graph.

One convention wherever the libraries differ (bench/zoo/specs.py, bench/zoo/recipes.py): SGD momentum
accumulates gradients and the current lr scales the step; Adam adds its epsilon after the bias
correction; weight decay is coupled L2. ``python -m bench.twins --train`` proves each.
Imported only in processes that run a Keras twin (it imports keras, so KERAS_BACKEND must be set).
"""
from __future__ import annotations

import dataclasses

import keras
from keras import ops

from bench.zoo.recipes import Recipe


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


def keras_optimizer(recipe: Recipe, steps_per_epoch: int):
    """Keras optimizer with the recipe's schedule and coupled weight decay."""
    sched = RecipeSchedule(recipe, steps_per_epoch)
    if recipe.optimizer == "sgd":
        return CoupledSGD(learning_rate=sched, momentum=recipe.momentum, nesterov=recipe.nesterov,
                          l2=recipe.weight_decay)
    return CoupledAdam(learning_rate=sched, l2=recipe.weight_decay)


def compile_keras(model, optimizer, jit: bool):
    """``model.compile`` as the training loop does it: sparse cross-entropy from logits, accuracy, jit or not."""
    import keras
    model.compile(optimizer=optimizer or "sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=jit)
    return model
