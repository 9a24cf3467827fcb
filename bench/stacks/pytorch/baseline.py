"""PyTorch's plain script for ``bench.overhead``: what a careful user writes by hand.

The same registry network, SGD momentum 0.9, synthetic input on the device, no per-step
synchronisation, one synchronised clock around the timed steps (the plain scripts of docs/anchors.md).
"""
from __future__ import annotations

import time


def bare_loop(model: str, batch: int, precision: str, device: str, steps: int, warmup: int = 20) -> float:
    """images/s of a hand-written eager PyTorch train loop."""
    import torch
    import torch.nn.functional as F

    from bench.stacks.pytorch.step import torch_amp_dtype
    from bench.zoo import build
    torch.manual_seed(0)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if device == "cuda" else torch.contiguous_format
    net = build(model, "torch").to(device).to(memory_format=fmt).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = torch_amp_dtype(precision)

    def step():
        with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)
