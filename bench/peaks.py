"""``python -m bench.peaks [--device D] [--remeasure]``: this machine's roofs, measured once and cached per machine.

Compute: the GEMM roof of each installed library (torch, TensorFlow, JAX) through its own matmul, per precision the
device runs (fp32 on a CPU; fp32, bf16, fp16 on a GPU), at the thread count jobs use: each library in a process of its
own with its stack's environment, as a job runs. Memory: a STREAM triad over arrays far larger than the last-level
cache (the best library's is the bandwidth roof), with a working-set sweep for the cache levels. Theoretical peaks
(CPU flags and clock; GPU properties from NVML) are printed beside the measured roofs, never in their place. The
cache is ``bench.core.roofs``'; a run records the roofs it used in its ``run_meta.json``."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from importlib.util import find_spec

from bench.core import roofs
from bench.core.env import _git, gpu_available, this_machine
from bench.core.stack_registry import PREALLOC_OFF, STACKS

CHILD_TIMEOUT_S = 240


def libraries() -> dict[str, str]:
    """{library (a backend): the first installed stack that runs on it}: one roof per library, whichever stack."""
    out: dict[str, str] = {}
    for info in STACKS.values():
        if info.backend not in out and all(find_spec(p) is not None for p in info.packages):
            out[info.backend] = info.name
    return out


def _child(stack_name: str, device: str, quick: bool, sweep: bool) -> int:
    """In the library's own process: its stack's kernels measured, one JSON line on stdout."""
    from bench.stacks import get_stack
    info = STACKS[stack_name]
    kernels = get_stack(info.framework, info.backend).roof_kernels(device)
    if kernels is None:
        print(json.dumps({"null_reason": f"{stack_name}: no roof kernels"}))
        return 0
    precisions = roofs.GPU_PRECISIONS if device == "cuda" else roofs.CPU_PRECISIONS
    print(json.dumps(roofs.measure_roofs(kernels, device, precisions, quick=quick, sweep=sweep)))
    return 0


def measure_library(stack_name: str, device: str, quick: bool, sweep: bool) -> dict:
    """One library's roofs, measured in a child process with its stack's environment (as a job's)."""
    info = STACKS[stack_name]
    env_set, env_drop = info.env_for("throughput", device)
    env = {k: v for k, v in os.environ.items() if k not in env_drop}
    env.update(PREALLOC_OFF, **env_set)
    cmd = [sys.executable, "-m", "bench.peaks", "--device", device, "--child", stack_name] + (
        ["--quick"] if quick else []) + (["--sweep"] if sweep else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
        return json.loads(p.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"null_reason": f"{stack_name}: no result in {CHILD_TIMEOUT_S} s"}
    except (ValueError, IndexError):
        tail = (p.stderr or "").strip().splitlines()[-1:] or ["no output"]
        return {"null_reason": f"{stack_name}: the measuring process failed ({tail[0][:200]})"}


def measure(device: str, quick: bool = False, only: tuple[str, ...] | None = None) -> dict:
    """Every installed library's roofs on ``device``, combined into a cache entry (``bench.core.roofs``)."""
    libs = {lib: name for lib, name in libraries().items() if only is None or lib in only}
    measured = {lib: measure_library(name, device, quick, sweep=i == 0) for i, (lib, name) in enumerate(libs.items())}
    ok = {lib: r for lib, r in measured.items() if r.get("triad_gbs")}
    best = max(ok, key=lambda lib: ok[lib]["triad_gbs"]) if ok else None
    sweep = next((r.pop("sweep") for r in measured.values() if "sweep" in r), [])
    theo = roofs.gpu_theoretical() if device == "cuda" else roofs.cpu_theoretical(os.cpu_count() or 1)
    from bench.core.env import cpu_name, gpu_name
    return {"device": device, "device_name": gpu_name() if device == "cuda" else cpu_name(),
            "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": _git("rev-parse", "HEAD"), "quick": quick, "libraries": measured,
            "bandwidth_gbs": ok[best]["triad_gbs"] if best else None, "bandwidth_library": best, "sweep": sweep,
            "theoretical": theo, "method": "python -m bench.peaks: bench.core.roofs.measure_roofs per library"}


def ensure(device: str, only: tuple[str, ...]) -> None:
    """Before a run's jobs: when this machine has no roofs cached on ``device``, measure them once (quick, only the
    libraries ``only`` the run's jobs use; one line on stderr) and cache them, so the run records them."""
    machine = this_machine()
    if roofs.cached(machine, device) is not None:
        return
    print(f"measuring this machine's roofs once (cached for later runs): {', '.join(only)} on {device}, quick "
          "(--no-roofs skips this; python -m bench.peaks --remeasure measures the full roofs)", file=sys.stderr)
    entry = measure(device, quick=True, only=only)
    if entry["bandwidth_gbs"]:
        roofs.store(machine, device, entry)
    else:
        print("note: no library measured a roof here; nothing cached ("
              + "; ".join(str(r.get("null_reason")) for r in entry["libraries"].values()) + ")", file=sys.stderr)


def describe(machine: str, entry: dict, cached: bool) -> str:
    """The roofs as the command prints them."""
    theo = entry.get("theoretical") or {}
    lines = [f"Roofs of {machine} ({entry['device']}: {entry.get('device_name')}), measured {entry.get('measured_at')}"
             + (" (cached; --remeasure measures again)" if cached else "")
             + (" in quick mode (smaller kernels: a bench.run's first measurement, not a roof to quote)"
                if entry.get("quick") else "")]
    for lib, r in entry["libraries"].items():
        if not r.get("gemm_gflops"):
            lines.append(f"  {lib:<11} {r.get('null_reason') or r.get('skipped')}")
            continue
        gemm = ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in r["gemm_gflops"].items())
        lines.append(f"  {lib:<11} GEMM {gemm}; triad {r['triad_gbs']:.1f} GB/s ({r.get('threads')} threads, "
                     f"{r.get('library')})")
    if entry.get("bandwidth_gbs"):
        lines.append(f"  bandwidth roof {entry['bandwidth_gbs']:.1f} GB/s ({entry['bandwidth_library']}'s triad)")
    if entry.get("sweep"):
        lines.append("  triad by working set: " + ", ".join(
            f"{s['working_set_kib']:.0f} KiB {s['gbs']:.3g}" for s in entry["sweep"]) + " GB/s")
    peak = ", ".join(f"{p} {v:.1f} GFLOP/s" for p, v in (theo.get("gflops") or {}).items())
    mem = f", {theo['gbs']:.0f} GB/s" if theo.get("gbs") else ""
    lines.append(f"  theoretical (beside, not a roof): {peak or 'none'}{mem}"
                 + (f" [{theo.get('basis')}]" if theo.get("basis") else "")
                 + (f"; {theo['null_reason']}" if theo.get("null_reason") else ""))
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.peaks", description=(
        "Measure this machine's roofs (each installed library's GEMM GFLOP/s at the thread count jobs use; STREAM "
        "triad GB/s over arrays far larger than the last-level cache) once, cache them per machine "
        f"(${roofs.ENV} or results/roofs.json) and print them with the theoretical peaks beside."))
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None,
                    help="the device measured (default: cuda when an NVIDIA GPU is visible, else cpu)")
    ap.add_argument("--remeasure", action="store_true", help="measure again even when this machine's roofs are cached")
    ap.add_argument("--quick", action="store_true",
                    help="smaller kernels (GEMM 1024, a quarter of the triad arrays): what bench.run measures when no roofs "
                         "are cached; for tests; not a roof to quote (--remeasure without it measures the full roofs)")
    ap.add_argument("--json", action="store_true", help="print the cache entry as JSON instead of the summary")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sweep", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if gpu_available() else "cpu")
    if args.child:
        return _child(args.child, device, args.quick, args.sweep)
    if device == "cuda" and not gpu_available():
        print("bench.peaks: error: --device cuda, but no NVIDIA GPU is visible here (NVML); use --device cpu.",
              file=sys.stderr)
        return 2
    machine = this_machine()
    entry = None if args.remeasure else roofs.cached(machine, device)
    was_cached = entry is not None
    if entry is None:
        entry = measure(device, quick=args.quick)
        if not entry["bandwidth_gbs"]:
            print(describe(machine, entry, False), file=sys.stderr)
            print("bench.peaks: no library measured a roof here; nothing cached.", file=sys.stderr)
            return 1
        roofs.store(machine, device, entry)
    print(json.dumps(entry, indent=1) if args.json else describe(machine, entry, was_cached))
    return 0


if __name__ == "__main__":
    sys.exit(main())
