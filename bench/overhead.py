"""Harness overhead: the suite's PyTorch train-throughput figure vs a bare loop written by hand, one process.

``python -m bench.overhead [--model resnet20_v1] [--batch-size 512] [--precision bf16] [--steps 200]``

The bare loop is what a careful user writes (ANCHORS.md §3): the same registry network, SGD momentum
0.9, synthetic input on the device, no per-step synchronisation, one synchronised clock around the
timed steps. The harness figure is exactly what ``bench.worker`` reports: ``make_step`` + warm-up +
per-step synchronised timing, images/s from the median step. Runs alternate (A/B, ``--repeats``
times) so drift hits both; the ratio is harness / bare (1.0 = no overhead; the target is >= 0.97).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def bare_loop(model: str, batch: int, precision: str, device: str, steps: int, warmup: int = 20) -> float:
    """images/s of a hand-written eager train loop."""
    import torch
    import torch.nn.functional as F

    from bench.models import build
    torch.manual_seed(0)
    fmt = torch.channels_last if device == "cuda" else torch.contiguous_format
    net = build(model, "torch").to(device).to(memory_format=fmt).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

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


def harness(model: str, batch: int, precision: str, device: str, steps: int) -> float:
    """images/s as the throughput suite measures it (bench.worker.run_throughput's timing)."""
    from bench.runners import make_step
    from bench.timing import summarize, timed, warmup
    r = make_step(model, "torch", "train", batch, precision, device=device)
    r.step()
    warmup(r.step, r.sync)
    times = [timed(r.step, r.sync) for _ in range(steps)]
    return summarize(times, batch)["images_per_s"]


def measure(model: str = "resnet20_v1", batch: int = 512, precision: str = "bf16", steps: int = 200,
            repeats: int = 3, device: str | None = None) -> dict:
    import torch
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_loop(model, batch, precision, device, steps))
        ours.append(harness(model, batch, precision, device, steps))
    return {"model": model, "device": device, "precision": precision, "batch_size": batch, "steps": steps,
            "repeats": repeats, "bare_images_per_s": statistics.median(bare),
            "harness_images_per_s": statistics.median(ours),
            "ratio": statistics.median(ours) / statistics.median(bare), "bare_all": bare, "harness_all": ours}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20_v1", help="registry name (default: resnet20_v1)")
    ap.add_argument("--batch-size", type=int, default=512, help="(default: 512)")
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16", "fp16"), help="(default: bf16)")
    ap.add_argument("--steps", type=int, default=200, help="timed steps per run (default: 200)")
    ap.add_argument("--repeats", type=int, default=3, help="A/B repetitions (default: 3)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None, help="(default: cuda if available)")
    a = ap.parse_args(argv)
    print(json.dumps(measure(a.model, a.batch_size, a.precision, a.steps, a.repeats, a.device)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
