"""Keras on TensorFlow: versions and GPUs, ``fit``'s call of the train function, the memory counter (the BFC
allocator's peak over one compiled training step: on a CPU both the absolute peak, cpu_alloc_peak, and its rise
above what was held before the step, alloc_peak; on a GPU the rise)."""
from __future__ import annotations

import os
import statistics

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

    def fit_data(self, x, y, batch_size: int) -> dict:
        """A ``tf.data`` pipeline of the arrays, in order, prefetching 2 batches, with tf.data's autotuning off.

        Keras' own adapter for arrays prefetches with ``AUTOTUNE``; when an epoch's ``fit`` ends, its iterator's
        destructor waits for the autotune thread, up to ~10 s on a 2-core CPU (``RootDataset::Iterator`` ->
        ``UnboundedThreadPool::LogicalThreadWrapper``, seen with py-spy): the loop calls ``fit`` once per epoch,
        so Keras' epoch_s carried that wait at random (docs/measures/training.md). The batches, their
        order and the step are unchanged (``fit`` takes a dataset of (x, y) batches)."""
        import tensorflow as tf
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).prefetch(2)
        options = tf.data.Options()
        options.autotune.enabled = False
        return {"x": ds.with_options(options)}

    def roof_kernels(self, device):
        from bench.stacks.keras.tensorflow_peaks import TensorFlowRoofKernels
        return TensorFlowRoofKernels(device, self.threads())

    def memory(self):
        return KerasTensorFlowMemory()

    def profile(self, spec):
        from bench.stacks.keras.tf_trace import profile_tf
        return profile_tf(self, spec.model, spec.batch_size, spec.precision, spec.device, spec.exec_mode, spec.steps,
                          spec.trace_dir, spec.model_options)


BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"  # set for CPU memory jobs alone (the registry's StackInfo.job_env)
# steps the CPU peak is read over, after a warm-up step, each on its own. A step's peak depends on the order
# TensorFlow's executor runs independent ops in, which varies from step to step. The largest cause on a CPU: each
# filter gradient (Conv2DBackpropFilter) takes a ~32 MiB scratch buffer, whatever the conv's size (32.0 MiB for a
# 1x8x8x4 input, 48 MiB for 64x32x32x16; TensorFlow 2.21, 2-core x86), and with two inter-op threads one or two of
# them are alive at once: ResNet-8 at batch 2 (32x32) peaks at 34.8 or 58.7-60.3 MiB, in proportions that change
# from process to process (1 step of 9 high in one process, 5 of 9 in another). So the figure is the median step's
# peak, and the source names the range of the steps' peaks beside it; at the sizes the suites measure (hundreds of
# MiB of activations) that buffer is a few percent. One inter-op thread would remove the coin flip but not the
# dependence on order: it makes TensorFlow run a memory-efficient DenseNet's recomputation early (DenseNet-BC-100
# batch 64: ~1.4 GiB instead of ~0.9), so the suites keep TensorFlow's default threads and say how many
CPU_PEAK_STEPS = 5
MiB = 2 ** 20
CPU_PEAK_SOURCE = ("tf get_memory_info('CPU:0') peak, BFC CPU allocator (TF_CPU_ALLOCATOR_USE_BFC=true), compiled train "
                   "step (jit_compile=False): the median of {steps} steps' peaks after a warm-up step (steps: "
                   "{lo:.1f}-{hi:.1f} MiB); TF inter-op threads: {threads} on {cores} cores")
ALLOC_PEAK_METHOD = ("tf get_memory_info('{dev}') peak minus current after reset_memory_stats (BFC allocator), "
                     "compiled train step (jit_compile=False): the median of {steps} steps after a warm-up step "
                     "(steps: {lo:.1f}-{hi:.1f} MiB)")


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
            if not on_gpu and not cpu_allocator_is_bfc():
                m.reasons.append(f"keras/tensorflow: no CPU allocator peak: TensorFlow started without {BFC_ENV}=true "
                                 "(its default CPU allocator counts large allocations only, or nothing without oneDNN; "
                                 "bench.pipeline.worker sets it for CPU memory jobs)")
                return m
            dev = "GPU:0" if on_gpu else "CPU:0"
            steps = self._step_peaks(net, opt, batch_size, options.get("input_size", 32), dev)
            peaks, rises = [p for p, _ in steps], [p - before for p, before in steps]
            m.alloc_peak = int(statistics.median(rises))
            m.alloc_peak_kind = "runtime"
            m.alloc_peak_method = ALLOC_PEAK_METHOD.format(dev=dev, steps=len(rises), lo=min(rises) / MiB,
                                                           hi=max(rises) / MiB)
            if on_gpu:
                return m
            m.cpu_alloc_peak = int(statistics.median(peaks))
            threads = tf.config.threading.get_inter_op_parallelism_threads() or "default"
            m.cpu_alloc_source = CPU_PEAK_SOURCE.format(steps=len(peaks), lo=min(peaks) / MiB, hi=max(peaks) / MiB,
                                                        threads=threads, cores=os.cpu_count())
        return m

    @staticmethod
    def _step_peaks(net, opt, batch_size: int, size: int, dev: str = "CPU:0") -> list[tuple[int, int]]:
        """(peak, held before) bytes of the ``dev`` allocator over each of CPU_PEAK_STEPS steps of Keras' compiled
        train function (as ``fit`` runs it, jit_compile=False: TensorFlow's graph), each read on its own, after a
        warm-up step (tracing, one-time buffers)."""
        import keras
        import numpy as np
        import tensorflow as tf
        rng = np.random.default_rng(0)
        x = tf.constant(rng.standard_normal((batch_size, size, size, 3)).astype("float32"))
        y = tf.constant(rng.integers(0, 10, batch_size))
        net.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
        net.train_on_batch(x, y)  # warm-up: trace, optimise the graph
        out = []
        for _ in range(CPU_PEAK_STEPS):
            tf.config.experimental.reset_memory_stats(dev)
            before = int(tf.config.experimental.get_memory_info(dev)["current"])
            net.train_on_batch(x, y)  # returns the loss on the host: the step has finished
            out.append((int(tf.config.experimental.get_memory_info(dev)["peak"]), before))
        return out
