"""``python -m bench.overhead``: the harness's train-throughput figure against each stack's plain script.

The measure itself is ``bench.measures.overhead`` (its docstring says what each plain script is).
"""
from __future__ import annotations

import argparse
import json
import sys

from bench.measures.overhead import STACKS, measure, measure_stack, resolve_stacks
from bench.measures.overhead import __doc__ as _doc


def _check(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every number in range and the model registered, before any framework is imported (``ap.error``: exit 2)."""
    from bench.zoo import get_entry
    try:
        get_entry(a.model)
    except KeyError as e:
        ap.error(e.args[0])
    for flag, value, least in (("--batch-size", a.batch_size, 1), ("--steps", a.steps, 1), ("--repeats", a.repeats, 1),
                               ("--max-warmup", a.max_warmup, 0)):
        if value is not None and value < least:
            ap.error(f"{flag} must be >= {least}, got {value}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.overhead", description=_doc.split("\n\n")[0])
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
    _check(ap, a)
    from bench.core.env import nvml_info
    if a.device is None:
        a.device = "cuda" if nvml_info() else "cpu"
    elif a.device == "cuda" and not nvml_info():
        ap.error("--device cuda but no NVIDIA GPU is visible (NVML found none): use --device cpu or leave it out")
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
