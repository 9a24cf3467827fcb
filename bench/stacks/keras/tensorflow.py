"""Keras on TensorFlow: versions and GPUs, ``fit``'s call of the train function, the memory counter (on a CPU,
the BFC CPU allocator's peak over one compiled training step)."""
from __future__ import annotations

import os

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


BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"  # set for CPU memory jobs alone (the registry's StackInfo.job_env)
# steps the CPU peak is read over, after a warm-up step, each on its own. A step's peak depends on the order
# TensorFlow's executor runs independent ops in, which varies from step to step (DenseNet-BC-100 memory-efficient,
# batch 64, 2-core CPU: 878 to 929 MiB over 8 steps), and now and then one step runs two large ops at once and peaks
# far higher (ResNet-8 at batch 2, 16x16 inputs: 35.1 MiB in 23 of 24 steps, 68.5 MiB in one; the highest of three
# steps made a batch-2 peak as high as a batch-16 one in one process of three), so the figure is the median step's
# peak: repeatable from process to process, the footprint of a typical step rather than of its rare worst
CPU_PEAK_STEPS = 5
CPU_PEAK_SOURCE = ("tf get_memory_info('CPU:0') peak, BFC CPU allocator (TF_CPU_ALLOCATOR_USE_BFC=true), compiled train "
                   "step (jit_compile=False): the median of {steps} steps' peaks after a warm-up step; TF inter-op threads: "
                   "{threads} on {cores} cores")


def cpu_allocator_is_bfc() -> bool:
    """True when this process's TensorFlow CPU allocator is its BFC allocator, whose statistics count every
    allocation: it counts a 64-byte tensor. TensorFlow's default CPU allocator with oneDNN counts only large
    allocations (256 KiB counted, 64 KiB not: TensorFlow 2.x on a 2-core x86 CPU) and without oneDNN keeps no
    statistics (get_memory_info raises ValueError), so neither gives a sound peak."""
    import tensorflow as tf
    try:
        with tf.device("/CPU:0"):
            before = tf.config.experimental.get_memory_info("CPU:0")["current"]
            probe = tf.ones((16,)) * 2.0  # an op's output, allocated by the CPU allocator (alive until the return)
            return probe.shape == (16,) and tf.config.experimental.get_memory_info("CPU:0")["current"] > before
    except ValueError:
        return False


class KerasTensorFlowMemory(KerasMemory):
    """Keras on TensorFlow: allocator peak on a GPU; on a CPU, the BFC CPU allocator's peak over one compiled
    training step. No saved-for-backward measure (GradientTape exposes none)."""

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
        import tensorflow as tf
        on_gpu = device != "cpu" and bool(tf.config.list_physical_devices("GPU"))
        with tf.device("/GPU:0" if on_gpu else "/CPU:0"):
            net, opt = self._build(model, precision, **options)
            m = self._state(net, opt)
            m.reasons.append("keras/tensorflow: no saved-for-backward measure (GradientTape exposes none); "
                             + ("on a GPU its allocator peak is peak_alloc_mib" if on_gpu else
                                "cpu_alloc_peak_mib is its CPU allocator's peak over a whole training step instead"))
            if on_gpu:
                return m
            if not cpu_allocator_is_bfc():
                m.reasons.append(f"keras/tensorflow: no CPU allocator peak: TensorFlow started without {BFC_ENV}=true "
                                 "(its default CPU allocator counts large allocations only, or nothing without oneDNN; "
                                 "bench.pipeline.worker sets it for CPU memory jobs)")
                return m
            m.cpu_alloc_peak = self._cpu_step_peak(net, opt, batch_size, options.get("input_size", 32))
            threads = tf.config.threading.get_inter_op_parallelism_threads() or "default"
            m.cpu_alloc_source = CPU_PEAK_SOURCE.format(steps=CPU_PEAK_STEPS, threads=threads, cores=os.cpu_count())
        return m

    @staticmethod
    def _cpu_step_peak(net, opt, batch_size: int, size: int) -> int:
        """Peak bytes of the CPU allocator over a step of Keras' compiled train function (as ``fit`` runs it,
        jit_compile=False: TensorFlow's graph): the median of CPU_PEAK_STEPS steps' peaks, each read on its own, after
        a warm-up step (tracing, one-time buffers)."""
        import keras
        import numpy as np
        import tensorflow as tf
        rng = np.random.default_rng(0)
        x = tf.constant(rng.standard_normal((batch_size, size, size, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, 10, batch_size))
        net.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        net.train_on_batch(x, y)  # warm-up: trace, optimise the graph
        peaks = []
        for _ in range(CPU_PEAK_STEPS):
            tf.config.experimental.reset_memory_stats("CPU:0")
            net.train_on_batch(x, y)  # returns the loss on the host: the step has finished
            peaks.append(int(tf.config.experimental.get_memory_info("CPU:0")["peak"]))
        return int(np.median(peaks))
