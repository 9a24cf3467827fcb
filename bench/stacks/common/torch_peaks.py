"""The roof kernels of torch (``bench.core.roofs.measure_roofs``): ``torch.mm`` and a one-kernel triad
(``torch.add(b, c, alpha=s, out=a)``), at the thread count torch runs jobs with. Shared by PyTorch and Keras on
torch: the same library, so one roof."""
from __future__ import annotations

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class TorchRoofKernels:
    gemm_name = "torch.mm"
    triad_name = "torch.add(b, c, alpha=s, out=a)"

    def __init__(self, device: str) -> None:
        import torch
        self.torch = torch
        self.dev = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
        self.sync = torch.cuda.synchronize if self.dev == "cuda" else (lambda: None)
        self.threads = torch.get_num_threads()
        self.library = f"torch {torch.__version__}"

    def gemm(self, n: int, precision: str):
        t = self.torch
        dtype = getattr(t, DTYPES[precision])
        a, b = (t.randn(n, n, device=self.dev).to(dtype) for _ in range(2))
        c = t.empty(n, n, device=self.dev, dtype=dtype)
        return (lambda: t.mm(a, b, out=c)), self.sync

    def triad(self, elements: int):
        t = self.torch
        a = t.empty(elements, device=self.dev)
        b, c = t.rand(elements, device=self.dev), t.rand(elements, device=self.dev)
        return (lambda: t.add(b, c, alpha=3.0, out=a)), self.sync
