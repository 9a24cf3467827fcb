"""Allocator peak memory per framework/backend, and OOM detection.

Primary figure: the framework allocator's peak (PyTorch ``max_memory_allocated``, TensorFlow
``get_memory_info(...)["peak"]``, JAX ``peak_bytes_in_use``), preallocation turned off by the worker.
On the CPU there is no allocator peak to read: the functions return (None, reason).
"""
from __future__ import annotations

PREALLOC_OFF = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def reset_peak(framework: str, backend: str) -> None:
    if framework == "torch" or backend == "torch":
        import torch
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf
        if tf.config.list_physical_devices("GPU"):
            tf.config.experimental.reset_memory_stats("GPU:0")
    # JAX has no reset: the worker measures one configuration per fresh process instead.


def peak_bytes(framework: str, backend: str) -> tuple[int | None, str]:
    """(peak bytes, source or null reason)."""
    if framework == "torch" or backend == "torch":
        import torch
        if not torch.cuda.is_available():
            return None, "no GPU: allocator peak not defined on the CPU"
        return torch.cuda.max_memory_allocated(), "torch.cuda.max_memory_allocated"
    if backend == "tensorflow":
        import tensorflow as tf
        if not tf.config.list_physical_devices("GPU"):
            return None, "no GPU: allocator peak not defined on the CPU"
        return tf.config.experimental.get_memory_info("GPU:0")["peak"], "tf get_memory_info peak"
    if backend == "jax":
        import jax
        dev = jax.devices()[0]
        if dev.platform != "gpu":
            return None, "no GPU: allocator peak not defined on the CPU"
        stats = dev.memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None, "jax device reports no peak_bytes_in_use"
        return stats["peak_bytes_in_use"], "jax peak_bytes_in_use (whole process)"
    return None, f"unknown backend {backend}"


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory errors of torch, TensorFlow and JAX/XLA."""
    name = type(exc).__name__
    text = str(exc)
    return (name in ("OutOfMemoryError", "ResourceExhaustedError")
            or "out of memory" in text.lower() or "RESOURCE_EXHAUSTED" in text)
