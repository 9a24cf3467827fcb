"""TensorFlow's roof kernels (``bench.core.roofs.measure_roofs``): ``tf.linalg.matmul`` and an XLA-fused triad,
at the thread count TensorFlow runs jobs with (its default pools)."""
from __future__ import annotations

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TensorFlowRoofKernels:
    gemm_name = "tf.linalg.matmul"
    triad_name = "tf.function(jit_compile=True) b + s * c"

    def __init__(self, device: str, threads: int) -> None:
        import tensorflow as tf
        self.tf = tf
        self.dev = "/GPU:0" if device == "cuda" and tf.config.list_physical_devices("GPU") else "/CPU:0"
        sync_devices = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
        self.sync = sync_devices if (sync_devices and self.dev != "/CPU:0") else (lambda: None)
        self.threads = threads
        self.library = f"tensorflow {tf.__version__}"

    def gemm(self, n: int, precision: str):
        tf = self.tf
        with tf.device(self.dev):
            a, b = (tf.cast(tf.random.normal((n, n)), DTYPES[precision]) for _ in range(2))
        return (lambda: tf.linalg.matmul(a, b)), self.sync

    def triad(self, elements: int):
        tf = self.tf
        with tf.device(self.dev):
            b, c = tf.random.uniform((elements,)), tf.random.uniform((elements,))
        fused = tf.function(lambda b, c: b + 3.0 * c, jit_compile=True)
        return (lambda: fused(b, c)), self.sync
