"""Harness overhead, every stack: the suite's train-throughput figure vs a plain script of that stack.

``python -m bench.overhead [--stacks all] [--model resnet20_v1] [--batch-size N] [--precision P] [--steps N]``

Stacks: ``torch`` (PyTorch eager), ``keras-tensorflow``, ``keras-jax``, ``keras-torch`` (Keras 3 on each
backend); ``all`` = torch and every installed Keras backend. The plain script is what a careful user
writes:

- PyTorch: a hand-written loop (ANCHORS.md §3): the same registry network, SGD momentum 0.9, synthetic
  input on the device, no per-step synchronisation, one synchronised clock around the timed steps.
- Keras: ``model.fit`` on the same twin (built and compiled as the harness does it: same optimizer, loss
  and jit setting), over the synthetic batch repeated ``steps`` times, after one warm-up ``fit``.

The harness figure is exactly what ``bench.worker`` reports: ``make_step`` + ``bench.timing.measure``
(first step, warm-up until stable, synchronised samples), images/s from the median step. Each stack
runs in its own process (Keras fixes its backend at import; PyTorch's in this one), and within it the
two alternate (A/B, then B/A, ``--repeats`` times) so drift hits both; the ratio is median harness / median plain
(1.0 = no overhead; the target is >= 0.97).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

STACKS = ("torch", "keras-tensorflow", "keras-jax", "keras-torch")


def bare_loop(model: str, batch: int, precision: str, device: str, steps: int, warmup: int = 20) -> float:
    """images/s of a hand-written eager PyTorch train loop."""
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


def keras_fit(model: str, batch: int, precision: str, device: str, steps: int, exec_mode: str | None = None) -> float:
    """images/s of ``model.fit`` on the Keras twin (this process's backend), one epoch of ``steps`` batches."""
    import keras
    import numpy as np

    from bench.models import build
    from bench.runners import KERAS_POLICY, default_keras_exec_mode
    mode = exec_mode or default_keras_exec_mode(device, keras.backend.backend())
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    net = build(model, "keras")
    net.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=mode == "jit")
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
    yb = rng.integers(0, 10, batch)
    x, y = np.concatenate([xb] * steps), np.concatenate([yb] * steps)
    warm = max(2, min(20, steps // 2))
    net.fit(x[:warm * batch], y[:warm * batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)  # compile
    t0 = time.perf_counter()
    net.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return batch * steps / (time.perf_counter() - t0)


def harness(model: str, batch: int, precision: str, device: str, steps: int, framework: str = "torch",
            max_warmup: int = 100) -> float:
    """images/s as the throughput suite measures it (``bench.worker.run_throughput``'s timing)."""
    from bench.runners import make_step
    from bench.timing import measure, summarize
    r = make_step(model, framework, "train", batch, precision, device=device)
    return summarize(measure(r, steps, max_warmup)["times"], batch)["images_per_s"]


def measure_stack(stack: str = "torch", model: str = "resnet20_v1", batch: int = 512, precision: str = "bf16",
                  steps: int = 200, repeats: int = 3, device: str | None = None, max_warmup: int = 100) -> dict:
    """A/B in this process: the plain script and the harness of ``stack``, alternated ``repeats`` times.

    A Keras stack needs this process's KERAS_BACKEND to be its backend (``measure`` sees to it).
    """
    framework = "torch" if stack == "torch" else "keras"
    if device is None:
        from bench.env import framework_env
        device = framework_env(framework)["device"]
    if framework == "torch":
        import torch
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
        plain = lambda: bare_loop(model, batch, precision, device, steps)  # noqa: E731
    else:
        plain = lambda: keras_fit(model, batch, precision, device, steps)  # noqa: E731
    bare, ours = [], []
    for i in range(repeats):  # ABBA order: a drift over the run (clock, allocator, cache) hits both alike
        runs = [(bare, plain), (ours, lambda: harness(model, batch, precision, device, steps, framework, max_warmup))]
        for into, run in (runs if i % 2 == 0 else runs[::-1]):
            into.append(run())
    return {"stack": stack, "plain": "hand-written loop" if framework == "torch" else "model.fit", "model": model,
            "device": device, "precision": precision, "batch_size": batch, "steps": steps, "repeats": repeats,
            "bare_images_per_s": statistics.median(bare), "harness_images_per_s": statistics.median(ours),
            "ratio": statistics.median(ours) / statistics.median(bare),
            "ratio_paired_median": statistics.median(h / b for h, b in zip(ours, bare)),  # robust to slow drift
            "bare_all": bare, "harness_all": ours}


def measure(model: str = "resnet20_v1", batch: int = 512, precision: str = "bf16", steps: int = 200,
            repeats: int = 3, device: str | None = None, stack: str = "torch", max_warmup: int = 100) -> dict:
    """``measure_stack`` for one stack; a Keras stack runs in a child process on its backend."""
    if stack == "torch":
        return measure_stack(stack, model, batch, precision, steps, repeats, device, max_warmup)
    backend = stack.split("-", 1)[1]
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    if device == "cpu":
        env.update(CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "bench.overhead", "--in-process", "--stacks", stack, "--model", model,
           "--batch-size", str(batch), "--precision", precision, "--steps", str(steps), "--repeats", str(repeats),
           "--max-warmup", str(max_warmup)]
    cmd += ["--device", device] if device else []
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"stack": stack, "error": f"exit {p.returncode}: {tail[0][:300]}"}
    return json.loads(lines[-1])


def resolve_stacks(arg: str) -> list[str]:
    """``all`` -> torch and every installed Keras backend; else the comma-separated names, checked."""
    if arg == "all":
        from bench.suites import installed_keras_backends
        return ["torch"] + [f"keras-{b}" for b in installed_keras_backends()]
    names = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in names if s not in STACKS]
    if bad or not names:
        raise ValueError(f"unknown stack(s) {bad or arg!r}; choose from {', '.join(STACKS)} or all")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stacks", default="all", help=f"{', '.join(STACKS)} (comma-separated) or all (default)")
    ap.add_argument("--model", default="resnet20_v1", help="registry name (default: resnet20_v1)")
    ap.add_argument("--batch-size", type=int, default=None, help="(default: 512 on a GPU, 64 on a CPU)")
    ap.add_argument("--precision", default=None, choices=("fp32", "bf16", "fp16"),
                    help="(default: bf16 on a GPU, fp32 on a CPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 200 on a GPU, 20 on a CPU)")
    ap.add_argument("--repeats", type=int, default=3, help="A/B repetitions (default: 3)")
    ap.add_argument("--max-warmup", type=int, default=100, help="cap on the harness's warm-up steps (default: 100, "
                    "as the suites; it stops earlier once step time is stable)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None, help="(default: cuda if available)")
    ap.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)  # a Keras stack's child
    a = ap.parse_args(argv)
    try:
        stacks = resolve_stacks(a.stacks)
    except ValueError as e:
        ap.error(str(e))
    if a.device is None:
        from bench.env import nvml_info
        a.device = "cuda" if nvml_info() else "cpu"
    gpu = a.device == "cuda"
    batch, steps = a.batch_size or (512 if gpu else 64), a.steps or (200 if gpu else 20)
    precision = a.precision or ("bf16" if gpu else "fp32")
    if a.in_process:
        print(json.dumps(measure_stack(stacks[0], a.model, batch, precision, steps, a.repeats, a.device, a.max_warmup)))
        return 0
    results = []
    for stack in stacks:
        r = measure(a.model, batch, precision, steps, a.repeats, a.device, stack, a.max_warmup)
        results.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{a.model}, batch {batch}, {precision}, {a.device}, {steps} steps, median of {a.repeats} A/B repeats:")
    for r in results:
        if "error" in r:
            print(f"  {r['stack']:<17} error: {r['error']}")
        else:
            print(f"  {r['stack']:<17} harness {r['harness_images_per_s']:9.1f}  {r['plain']:<17} "
                  f"{r['bare_images_per_s']:9.1f} images/s  ratio {r['ratio']:.3f} "
                  f"(paired A/B median {r.get('ratio_paired_median', float('nan')):.3f})")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
