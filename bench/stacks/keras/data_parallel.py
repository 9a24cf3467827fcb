"""Keras 3 data parallelism, each backend with its own standard API (``jax_dp``, ``tensorflow_dp``).

``keras_dp_train`` builds the Keras twin inside the backend's data-parallel scope over ``replicas``
devices, lets the caller set its weights, sets the BatchNorm mode, and trains ``len(batches)`` steps
with Keras' own ``fit`` (no shuffling: the batches in order), so the backend splits every global
batch over the replicas as it does for any user.

What each backend offers (the module of the backend says why):

- JAX, ``keras.distribution.DataParallel``: one jitted program over a device mesh; the batch axis is
  sharded and every reduction over it (the loss mean, BatchNorm's moments) is a reduction over the
  *global* batch, inserted by XLA. BatchNorm is therefore always synchronised; there is no local mode.
- TensorFlow, ``tf.distribute.MirroredStrategy``: one replica per device, gradients all-reduced;
  BatchNorm is local unless the layer has ``synchronized=True`` (Keras then all-reduces the moments).
"""
from __future__ import annotations

import importlib
import os


def _backend():
    import keras
    return importlib.import_module(f"bench.stacks.keras.{keras.backend.backend()}_dp")


def prepare_process(backend: str, replicas: int) -> None:
    """Before Keras is imported: what the backend needs to see ``replicas`` host devices (env flags)."""
    importlib.import_module(f"bench.stacks.keras.{backend}_dp").prepare_process(replicas)


def bn_modes() -> tuple[str, ...]:
    """The BatchNorm modes this backend's data-parallel path has (``local``, ``sync``)."""
    return _backend().BN_MODES


def collective_backend() -> str:
    return _backend().COLLECTIVE


def device_count() -> int:
    """Devices the backend's data-parallel API can place replicas on in this process."""
    return _backend().device_count()


def keras_dp_train(model: str, options: dict, set_weights, batches: list, replicas: int, bn: str, recipe,
                   precision: str = "fp64"):
    """Train the Keras twin of ``model`` data-parallel; returns the trained Keras model.

    Args:
        set_weights: called with the built model (inside the scope) to give it its starting weights.
        batches: ``[(x NCHW float32, y int64)]`` global batches in order (transposed to NHWC here).
        bn: a mode of :func:`bn_modes`.
    """
    import keras
    import numpy as np

    from bench.stacks.keras.optimizers import compile_keras, keras_optimizer
    from bench.zoo import build

    be = _backend()
    if bn not in be.BN_MODES:
        raise ValueError(f"BatchNorm mode {bn!r} does not exist under {be.API} (modes: {be.BN_MODES})")
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64" if precision == "fp64" else "float32")
    try:
        with be.scope(replicas):
            km = build(model, "keras", **options)
            set_weights(km)
            be.set_bn_mode(km, bn)
            opt = keras_optimizer(recipe, len(batches))
            be.adapt_optimizer(opt, replicas)
            compile_keras(km, opt, jit=be.JIT)
            x = np.concatenate([b[0] for b in batches]).transpose(0, 2, 3, 1).astype(km.compute_dtype)
            y = np.concatenate([b[1] for b in batches])
            km.fit(x, y, batch_size=len(batches[0][0]), epochs=1, shuffle=False, verbose=0)
    finally:
        keras.config.set_dtype_policy(policy)
    return km


def keras_dp_step_times(model: str, options: dict, replicas: int, per_replica_batch: int, steps: int,
                        warmup: int = 3, bn: str = "sync") -> list[float]:
    """Seconds of each of ``steps`` data-parallel training steps of ``model.fit`` (global batch
    ``replicas x per_replica_batch``: weak scaling), after ``warmup`` steps. Each step ends when its loss
    is read back on the host (a callback), so an asynchronous backend cannot run ahead of the clock."""
    import time

    import keras
    import numpy as np

    from bench.stacks.keras.optimizers import compile_keras, keras_optimizer
    from bench.zoo import build, get_spec
    from bench.zoo.recipes import recipe_for

    be = _backend()
    spec = get_spec(model, **options)
    batch = replicas * per_replica_batch
    n = warmup + steps
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # the step is done when its loss is on the host
            times.append(time.perf_counter() - self.t0)

    keras.utils.set_random_seed(0)
    with be.scope(replicas):
        km = build(model, "keras", **options)
        be.set_bn_mode(km, bn)
        opt = keras_optimizer(recipe_for("paper", spec.family, batch_size=batch), n)
        be.adapt_optimizer(opt, replicas)
        compile_keras(km, opt, jit=be.JIT)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n * batch, spec.input_size, spec.input_size, spec.input_channels)).astype("float32")
        y = rng.integers(0, spec.num_classes, n * batch)
        km.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    return times[warmup:]


def step_times_job(backend: str, replicas: int, model: str, options: dict, per_replica_batch: int,
                   steps: int) -> list[float]:
    """``bench.scaling``'s job for Keras on ``backend``, in a fresh process: device flags, then the timer."""
    os.environ["KERAS_BACKEND"] = backend
    prepare_process(backend, replicas)
    return keras_dp_step_times(model, options, replicas, per_replica_batch, steps)
