"""This machine's roofs: the cache ``python -m bench.peaks`` fills, the theoretical peaks read from the device, the
timing helper the stacks' measuring kernels share, and the roof a figure is compared with.

The cache (``results/roofs.json``, or ``$TWINBENCH_ROOFS``) holds one entry per machine, keyed as history keys
machines (:func:`bench.core.env.machine_of`), and per device (cpu | cuda). An entry::

    {"device": "cpu", "device_name": ..., "measured_at": ISO UTC, "git_commit": ..., "method": ...,
     "libraries": {"torch": {"gemm_gflops": {"fp32": ...}, "triad_gbs": ..., "threads": 2, "method": ...}, ...},
     "bandwidth_gbs": the best library's triad, "bandwidth_library": ..., "sweep": [{"working_set_mib", "gbs"}],
     "theoretical": {"gflops": {"fp32": ...}, "gbs": ..., "basis": ..., "upper_bound": bool, "null_reason": ...}}

Measured roofs are the roofs; a theoretical peak is shown beside them, never used in their place.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = "TWINBENCH_ROOFS"
CPU_PRECISIONS = ("fp32",)
GPU_PRECISIONS = ("fp32", "bf16", "fp16")


def cache_path() -> Path:
    """Where the roofs are cached: ``$TWINBENCH_ROOFS`` or ``results/roofs.json``."""
    return Path(os.environ.get(ENV) or ROOT / "results" / "roofs.json")


def load_all(path: Path | None = None) -> dict:
    p = path or cache_path()
    try:
        data = json.loads(p.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached(machine: str, device: str, path: Path | None = None) -> dict | None:
    """The cached roofs of ``machine`` on ``device`` (None: not measured there yet)."""
    entry = load_all(path).get(machine, {}).get(device)
    return entry if isinstance(entry, dict) and entry.get("libraries") else None


def store(machine: str, device: str, entry: dict, path: Path | None = None) -> Path:
    """Write ``entry`` as ``machine``'s roofs on ``device`` (the other machines' entries kept)."""
    p = path or cache_path()
    data = load_all(p)
    data.setdefault(machine, {})[device] = entry
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, p)
    return p


def for_run(device: str) -> dict:
    """What a run records in ``run_meta.json`` as ``roofs``: this machine's cached roofs on ``device`` (with their
    method and date), or a null reason when ``python -m bench.peaks`` has not measured them here."""
    from bench.core.env import this_machine
    machine = this_machine()
    entry = cached(machine, device)
    if entry is None:
        return {"machine": machine, "device": device, "null_reason": f"no roofs measured on this machine ({device}): "
                f"python -m bench.peaks --device {device}"}
    return {"machine": machine, **entry}


def compute_roof(roofs: dict | None, library: str | None, precision: str) -> float | None:
    """The measured GEMM roof (GFLOP/s) of ``library`` (a backend: torch | tensorflow | jax) in ``precision``."""
    try:
        return float(roofs["libraries"][library]["gemm_gflops"][precision])
    except (KeyError, TypeError, ValueError):
        return None


def memory_roof(roofs: dict | None) -> float | None:
    """The measured bandwidth roof (GB/s): the best library's STREAM triad over arrays far larger than the LLC."""
    try:
        return float(roofs["bandwidth_gbs"])
    except (KeyError, TypeError, ValueError):
        return None


def bandwidth_at(roofs: dict | None, working_set_bytes: float) -> float | None:
    """The bandwidth roof (GB/s) for data of ``working_set_bytes``: the best triad the sweep measured at that working
    set or any larger one (data that fits a cache level is served at least as fast as a larger working set; an
    envelope, so a noisy sweep point never lowers it), and never below the DRAM roof. None without roofs."""
    dram = memory_roof(roofs)
    if dram is None:
        return None
    sweep = [s["gbs"] for s in (roofs or {}).get("sweep") or [] if s["working_set_kib"] * 2**10 >= working_set_bytes]
    return max([dram, *sweep])


def best_rate(fn, work: float, sync=lambda: None, min_s: float = 0.5, max_reps: int = 200) -> float:
    """``work`` per second of ``fn``'s fastest call, over calls for at least ``min_s`` seconds (and 3 calls) after
    one warm-up call; ``sync`` waits for the device. The fastest call: a roof is what the machine can do."""
    fn()
    sync()
    best, start, reps = float("inf"), time.perf_counter(), 0
    while reps < 3 or (time.perf_counter() - start < min_s and reps < max_reps):
        t = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t)
        reps += 1
    return work / best


# vector width from the CPU flags -> fp32 FLOPs per cycle per core, assuming two FMA pipes of that width (an upper
# bound: some cores split a 512-bit FMA in two 256-bit halves, and so reach half of it)
_FLAGS_FLOPS = (("avx512f", 64, "AVX-512: 2 FMA x 16 fp32 x 2"), ("avx2", 32, "AVX2+FMA: 2 FMA x 8 fp32 x 2"),
                ("avx", 16, "AVX: 8 fp32 add + 8 mul"), ("sse", 8, "SSE: 4 fp32 add + 4 mul"))


def _max_clock_mhz() -> tuple[float | None, str]:
    """(the maximum clock in MHz, where it came from); cpufreq's maximum, else lscpu's 'CPU max MHz'."""
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()) / 1000, "cpufreq max"
    except (OSError, ValueError):
        pass
    import subprocess
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^CPU max MHz:\s*([\d.]+)", out, re.M)
        if m:
            return float(m.group(1)), "lscpu CPU max MHz"
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return None, ""


def cpu_theoretical(cores: int, cpuinfo: str | None = None) -> dict:
    """The CPU's fp32 peak from its flags and clock: cores x clock x FLOPs per cycle (``_FLAGS_FLOPS``). An upper
    bound only where the maximum clock is readable; otherwise the current clock of /proc/cpuinfo, marked so."""
    try:
        text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    m = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    per_cycle = next(((n, why) for flag, n, why in _FLAGS_FLOPS if flag in flags), None)
    if per_cycle is None:
        return {"gflops": {}, "null_reason": "no vector flags readable in /proc/cpuinfo"}
    mhz, source = _max_clock_mhz() if cpuinfo is None else (None, "")
    upper = mhz is not None
    if mhz is None:
        m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
        if not m:
            return {"gflops": {}, "null_reason": "no clock readable (/proc/cpuinfo, cpufreq, lscpu)"}
        mhz, source = float(m.group(1)), "/proc/cpuinfo cpu MHz (the current clock: boost may exceed it)"
    gflops = cores * mhz / 1e3 * per_cycle[0]
    return {"gflops": {"fp32": gflops}, "basis": f"{cores} cores x {mhz:.0f} MHz ({source}) x {per_cycle[0]} fp32 "
            f"FLOPs/cycle ({per_cycle[1]})", "upper_bound": upper,
            "null_reason": None if upper else "no maximum clock readable: not an upper bound"}


def gpu_theoretical() -> dict:
    """GPU 0's peaks from NVML (untested on a GPU here): fp32 = CUDA cores x 2 x max SM clock; memory = max memory
    clock x 2 (double data rate) x bus width. Tensor-core peaks are not readable from NVML: left out."""
    from bench.core.nvml import close, open_device
    nv, h, _ = open_device(0)
    if nv is None:
        return {"gflops": {}, "null_reason": "no NVML"}
    try:
        out: dict = {"gflops": {}, "upper_bound": True, "null_reason": "tensor-core (bf16/fp16) peaks: not in NVML"}
        sm = nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)
        mem = nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)
        bus = nv.nvmlDeviceGetMemoryBusWidth(h) if hasattr(nv, "nvmlDeviceGetMemoryBusWidth") else None
        cores = nv.nvmlDeviceGetNumGpuCores(h) if hasattr(nv, "nvmlDeviceGetNumGpuCores") else None
        if cores:
            out["gflops"]["fp32"] = cores * 2 * sm / 1e3
        if bus:
            out["gbs"] = mem * 2 * bus / 8 / 1e3
        out["basis"] = f"{cores} CUDA cores x 2 x {sm} MHz; {mem} MHz x 2 x {bus}-bit bus (NVML maxima)"
        return out
    except Exception as e:  # noqa: BLE001  (an NVML without these queries: no theoretical line)
        return {"gflops": {}, "null_reason": f"NVML: {e}"}
    finally:
        close(nv)


def llc_bytes() -> int | None:
    """The last-level cache's size (sysfs), None where unreadable."""
    sizes = []
    for p in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        m = re.match(r"(\d+)([KMG]?)", p.read_text().strip())
        if m:
            sizes.append(int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])
    return max(sizes) if sizes else None


def measure_roofs(kernels, device: str, precisions: tuple[str, ...], quick: bool = False, sweep: bool = False,
                  min_s: float = 0.5) -> dict:
    """One library's roofs through its own kernels (a stack's :meth:`bench.stacks.base.Stack.roof_kernels`):
    ``kernels.gemm(n, precision)`` and ``kernels.triad(elements)`` each return ``(call, sync)``.

    GEMM: n x n by n x n (2 n^3 FLOPs; n = 2048 on a CPU, 8192 on a GPU; 1024 when ``quick``), the fastest call.
    Triad: ``a = b + s * c`` over fp32 arrays of 4 x the last-level cache each (at least 64 MiB; 1 GiB on a GPU),
    3 x 4 bytes per element counted (STREAM's rule: reads and the write, no write-allocate), the fastest call.
    ``sweep``: the triad over working sets from 48 KiB up to that size (x4 steps), for the cache levels."""
    gpu = device == "cuda"
    n = 1024 if quick else (8192 if gpu else 2048)
    gemm, skipped = {}, {}
    for p in precisions:
        try:
            call, sync = kernels.gemm(n, p)
            gemm[p] = best_rate(call, 2 * n ** 3 / 1e9, sync, min_s)
        except Exception as e:  # noqa: BLE001  (a precision the library cannot run here: said, not fatal)
            skipped[p] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    llc = llc_bytes() or 32 * 2**20
    per_array = (2**28 if quick else 2**30) if gpu else max(4 * llc, 64 * 2**20) // (4 if quick else 1)
    call, sync = kernels.triad(per_array // 4)
    triad = best_rate(call, 3 * per_array / 1e9, sync, min_s)
    out = {"gemm_gflops": gemm, "gemm_n": n, "triad_gbs": triad, "triad_array_mib": per_array / 2**20,
           "threads": kernels.threads, "library": kernels.library,
           "method": f"GEMM {n}x{n} ({kernels.gemm_name}), fastest of >= 3 calls over {min_s} s; STREAM triad "
                     f"a = b + s*c ({kernels.triad_name}), fp32 arrays of {per_array / 2**20:.0f} MiB each, 12 bytes "
                     f"per element, fastest call"}
    if skipped:
        out["skipped"] = skipped
    if sweep:
        out["sweep"] = []
        ws = 48 * 2**10
        while ws <= 3 * per_array:
            call, sync = kernels.triad(max(ws // 12, 1024))
            out["sweep"].append({"working_set_kib": ws / 2**10, "gbs": best_rate(call, ws / 1e9, sync, min_s)})
            ws *= 4
    return out
