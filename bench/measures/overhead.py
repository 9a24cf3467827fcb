"""Harness overhead, every stack: the suite's train-throughput figure vs a plain script of that stack.

``python -m bench.overhead [--stacks all] [--model resnet20_v1] [--batch-size N] [--precision P] [--steps N]``

Stacks: ``torch`` (PyTorch eager), ``keras-tensorflow``, ``keras-jax``, ``keras-torch`` (Keras 3 on each
backend); ``all`` = torch and every installed Keras backend. The plain script is what a careful user
writes:

- PyTorch: a hand-written loop (the plain scripts of docs/anchors.md): the same registry network, SGD momentum 0.9, synthetic
  input on the device, no per-step synchronisation, one synchronised clock around the timed steps.
- Keras: ``model.fit`` on the same twin (built and compiled as the harness does it: same optimizer, loss
  and jit setting), over the synthetic batch repeated ``steps`` times, after one warm-up ``fit``.

The harness figure is exactly what the throughput measure reports: ``make_step`` + ``bench.measures.timing.measure``
(first step, warm-up until stable, synchronised samples), images/s from the median step. Each stack
runs in its own process (Keras fixes its backend at import; PyTorch's in this one), and within it the
two alternate (A/B, then B/A, ``--repeats`` times) so drift hits both; the ratio is median harness / median plain
(1.0 = no overhead; the target is >= 0.97).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench.core.stack_registry import STACKS as _REGISTRY

# the stacks by their command-line names (torch, keras-tensorflow, keras-jax, keras-torch)
STACKS = {s.job_tag: s for s in _REGISTRY.values()}


def harness(model: str, batch: int, precision: str, device: str, steps: int, framework: str = "torch",
            max_warmup: int = 100) -> float:
    """images/s as the throughput suite measures it (``bench.measures.throughput.run_throughput``'s timing)."""
    from bench.measures.timing import measure, summarize
    from bench.stacks import make_step
    r = make_step(model, framework, "train", batch, precision, device=device)
    return summarize(measure(r, steps, max_warmup)["times"], batch)["images_per_s"]


def measure_stack(stack: str = "torch", model: str = "resnet20_v1", batch: int = 512, precision: str = "bf16",
                  steps: int = 200, repeats: int = 3, device: str | None = None, max_warmup: int = 100) -> dict:
    """A/B in this process: the plain script and the harness of ``stack``, alternated ``repeats`` times.

    A Keras stack needs this process's KERAS_BACKEND to be its backend (``measure`` sees to it).
    """
    from bench.core.hygiene import pin_malloc
    from bench.stacks import get_stack
    cpu_malloc = pin_malloc()  # the allocator regime of the suite's jobs (bench.pipeline.worker), for both sides
    info = STACKS[stack]
    impl = get_stack(info.framework, info.backend)
    framework = info.framework
    device = device or impl.env()["device"]
    plain = lambda: impl.plain_baseline(model, batch, precision, device, steps)  # noqa: E731
    bare, ours = [], []
    for i in range(repeats):  # ABBA order: a drift over the run (clock, allocator, cache) hits both alike
        runs = [(bare, plain), (ours, lambda: harness(model, batch, precision, device, steps, framework, max_warmup))]
        for into, run in (runs if i % 2 == 0 else runs[::-1]):
            into.append(run())
    return {"stack": stack, "plain": info.plain, "model": model,
            "device": device, "precision": precision, "batch_size": batch, "steps": steps, "repeats": repeats,
            "bare_images_per_s": statistics.median(bare), "harness_images_per_s": statistics.median(ours),
            "ratio": statistics.median(ours) / statistics.median(bare),
            "ratio_paired_median": statistics.median(h / b for h, b in zip(ours, bare)),  # robust to slow drift
            "bare_all": bare, "harness_all": ours, "cpu_malloc": cpu_malloc}


def measure(model: str = "resnet20_v1", batch: int = 512, precision: str = "bf16", steps: int = 200,
            repeats: int = 3, device: str | None = None, stack: str = "torch", max_warmup: int = 100) -> dict:
    """``measure_stack`` for one stack; a stack with a process environment (Keras: its backend) runs in a child
    process that has it."""
    info = STACKS[stack]
    if not info.process_env:
        return measure_stack(stack, model, batch, precision, steps, repeats, device, max_warmup)
    env = {**os.environ, **info.process_env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
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
        import importlib.util
        return [tag for tag, s in STACKS.items() if all(importlib.util.find_spec(p) for p in s.packages)]
    names = [s.strip() for s in arg.split(",") if s.strip()]
    bad = [s for s in names if s not in STACKS]
    if bad or not names:
        raise ValueError(f"unknown stack(s) {bad or arg!r}; choose from {', '.join(STACKS)} or all")
    return names
