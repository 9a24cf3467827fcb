"""Keras on TensorFlow: versions and GPUs, ``fit``'s call of the train function, the memory counter."""
from __future__ import annotations

from bench.stacks.base import NO_GPU, StepMemory
from bench.stacks.keras import KerasStack
from bench.stacks.keras.memory import KerasMemory


class KerasTensorFlowStack(KerasStack):
    name = "keras/tensorflow"
    backend = "tensorflow"

    def backend_version_and_gpus(self):
        import tensorflow as tf
        return tf.__version__, tf.config.list_physical_devices("GPU")

    def fit_window(self, model, train_function, batch, n):
        logs = None
        for _ in range(n):  # as TensorFlow's fit: the train function takes an iterator of batches
            x, y = batch()
            logs = train_function(iter([(x, y, None)]))
        return logs

    def memory(self):
        return KerasTensorFlowMemory()

    def profile(self, model, batch_size=8, precision="fp32", device=None, exec_mode=None, steps=5, trace_dir=None,
                model_options=None):
        from bench.stacks.keras.tf_trace import profile_tf
        return profile_tf(self, model, batch_size, precision, device, exec_mode, steps, trace_dir, model_options)


class KerasTensorFlowMemory(KerasMemory):
    """Keras on TensorFlow: allocator peak on a GPU; no sound saved-for-backward measure."""

    name = "keras/tensorflow"

    def reset_peak(self) -> None:
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_bytes(self) -> tuple[int | None, str]:
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            return None, NO_GPU
        return tf.config.experimental.get_memory_info("GPU:0")["peak"], "tf get_memory_info peak"

    def step_memory(self, model: str, batch_size: int, precision: str = "fp32", device: str | None = None,
                    **options) -> StepMemory:
        net, opt = self._build(model, precision, **options)
        m = self._state(net, opt)
        m.reasons.append("keras/tensorflow: no sound saved-for-backward measure (GradientTape exposes none, and "
                         "get_memory_info('CPU:0') reads zeros)")
        return m
