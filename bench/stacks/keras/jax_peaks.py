"""JAX's roof kernels (``bench.core.roofs.measure_roofs``): a jitted ``jnp.matmul`` and a jitted triad (one XLA
fusion), each call waited for with ``block_until_ready``, at the thread count XLA runs jobs with."""
from __future__ import annotations

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class JaxRoofKernels:
    gemm_name = "jax.jit(jnp.matmul)"
    triad_name = "jax.jit(b + s * c)"

    def __init__(self, device: str, threads: int) -> None:
        import jax
        self.jax = jax
        self.threads = threads
        self.library = f"jax {jax.__version__}"
        self.sync = lambda: None  # each call blocks on its own result

    def gemm(self, n: int, precision: str):
        import jax.numpy as jnp
        k1, k2 = self.jax.random.split(self.jax.random.PRNGKey(0))
        a = self.jax.random.normal(k1, (n, n)).astype(DTYPES[precision])
        b = self.jax.random.normal(k2, (n, n)).astype(DTYPES[precision])
        mm = self.jax.jit(jnp.matmul)
        return (lambda: mm(a, b).block_until_ready()), self.sync

    def triad(self, elements: int):
        k1, k2 = self.jax.random.split(self.jax.random.PRNGKey(1))
        b, c = self.jax.random.uniform(k1, (elements,)), self.jax.random.uniform(k2, (elements,))
        fused = self.jax.jit(lambda b, c: b + 3.0 * c)
        return (lambda: fused(b, c).block_until_ready()), self.sync
