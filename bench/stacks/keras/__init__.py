"""Keras 3, one folder for every backend (as Keras keeps ``keras/src/backend/<name>/``).

What every backend shares sits in this package: the timed step (``step``), the training loop
(``train``), the optimizers that follow the twins' conventions (``optimizers``), the device-resident
data plan (``data``), the shared part of the memory counter (``memory``) and the ``model.fit``
baseline (``baseline``). What differs per backend -- its versions and devices, how ``fit`` calls the
train function, the allocator peak, what one step keeps, the default exec mode -- is one module per
backend: ``tensorflow.py``, ``jax.py``, ``torch.py``, each a :class:`KerasStack` subclass.

Modules here import keras, so they are imported only in a job's process, after ``KERAS_BACKEND`` is
set (``bench.stacks.StackInfo.process_env``).
"""
from __future__ import annotations

from collections.abc import Callable

from bench.core.env import cpu_name, gpu_name
from bench.stacks.base import Stack


class KerasStack(Stack):
    """Keras on one backend; subclasses fill in the backend's pieces."""

    framework = "keras"
    checkpoint_ext = ".npz"
    exec_modes = ("jit", "nojit")

    def check_exec_mode(self, mode: str) -> str:
        """``mode`` if Keras knows it (jit | nojit). Raises ValueError otherwise."""
        if mode not in self.exec_modes:
            raise ValueError(f"keras exec_mode must be jit or nojit, got {mode!r}")
        return mode

    def backend_version_and_gpus(self) -> tuple[str, list]:
        """(the backend library's version, its visible GPUs)."""
        raise NotImplementedError

    def env(self, device: str | None = None) -> dict:
        import keras
        version, gpus = self.backend_version_and_gpus()
        on_gpu = bool(gpus) and device != "cpu"
        return {"framework": "keras", "backend": self.backend, "framework_version": keras.__version__,
                "backend_version": version, "device": "cuda" if on_gpu else "cpu",
                "device_name": gpu_name() if on_gpu else cpu_name()}

    def param_counts(self, net) -> tuple[int, int]:
        from bench.zoo.counts import keras_param_counts
        return keras_param_counts(net)

    def fit_window(self, model, train_function, batch: Callable[[], tuple], n: int):
        """Run ``n`` train steps as this backend's ``fit`` calls ``train_function``; return the last logs."""
        raise NotImplementedError

    def fit_data(self, x, y, batch_size: int) -> dict:
        """What the training loop's ``fit`` and ``evaluate`` receive for arrays ``x``, ``y`` in batches of
        ``batch_size``, in order (no shuffle): the arrays themselves, as a user passes them; a backend whose own
        adapter costs the loop time it would not cost a user's single ``fit`` overrides it (TensorFlow)."""
        return {"x": x, "y": y, "batch_size": batch_size}

    def between_jobs(self):
        import keras
        keras.backend.clear_session()  # the last job's graphs, layer-name counters and global policy dropped
        keras.config.set_dtype_policy("float32")

    def make_step(self, spec):
        from bench.stacks.keras.step import make_keras_step
        return make_keras_step(self, spec)

    def train(self, cfg, data, on_epoch):
        from bench.stacks.keras.train import train_keras
        return train_keras(self, cfg, data, on_epoch)

    def plain_baseline(self, model, batch, precision, device, steps):
        from bench.stacks.keras.baseline import keras_fit
        return keras_fit(self, model, batch, precision, device, steps)
