"""Measurement hygiene: what the machine was doing while a job was timed, and whether to trust the timing.

* :class:`CpuWindow`: the CPU time *other* processes used during a window (the machine's busy jiffies
  from ``/proc/stat`` minus this process's from ``/proc/self/stat``), in cores (CPU-seconds per second).
* :class:`GpuWindow`: NVML over a window: energy drawn (``nvmlDeviceGetTotalEnergyConsumption``, mJ),
  and at its end the SM clock, power, temperature, clock throttle reasons and other processes on the
  device. Inert (with the reason) without an NVIDIA GPU, pynvml, or a counter.
* :func:`pin_malloc`: glibc's malloc thresholds fixed for the job's process, so a step's cost does not depend on
  what the process happened to allocate and free before it (see its docstring); :func:`malloc_setting` says what
  was set, for the row.
* :func:`flag`: ``contended`` / ``unstable`` labels for a row (empty: clean); the report keeps a flagged
  row out of its verdicts (save where every repeat of a job is unstable: ``bench.report.common.left_out``).
"""
from __future__ import annotations

import os
import time

from bench.core.nvml import close, open_device

CONTENDED_CORES = 0.5  # other processes' load above this (in cores) during the job: contended
UNSTABLE_CV = 0.10  # coefficient of variation of the timed steps above this: unstable timing


def _machine_busy() -> int | None:
    """Busy jiffies of the whole machine (user nice system irq softirq steal) from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return v[0] + v[1] + v[2] + sum(v[5:8])


def _self_busy() -> int | None:
    """This process's CPU jiffies (utime + stime, every thread) from /proc/self/stat."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[11]) + int(fields[12])  # fields 14, 15 of proc(5), counted after the command name


# glibc's malloc serves a block above M_MMAP_THRESHOLD (128 KiB at start) with its own mmap, returned with munmap
# when freed: a CPU train step's activations are such blocks, so a fresh process page-faults them in anew every
# step. glibc raises the threshold (up to 32 MiB, its trim threshold to twice that) the first time the process
# frees an mmapped block below 32 MiB: from then on those blocks are reused from the heap. Whether that has
# happened depends on the process's past: a PyTorch ResNet-20 CPU train step (batch 32, 2-core VM) took 80-84 ms
# in a process that had loaded CIFAR-10 or freed one 16 MiB array first, 85-89 ms in one that had not (three
# fresh processes each), and 79-81 ms with the thresholds set as here; that is why the real-data step was timed
# 6-17% faster than the synthetic one in six of six process pairs, while in one process they were within 1%.
# The worker sets them at the top of every job, the regime a process reaches once it has freed a large block.
MALLOC_MMAP_THRESHOLD = 32 * 2**20
MALLOC_TRIM_THRESHOLD = 64 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_malloc = {"setting": None, "why": "C allocator not pinned: the job did not start in bench.pipeline.worker"}


def pin_malloc() -> str | None:
    """Fix glibc's mmap and trim thresholds in this process (``mallopt``), once, before the job allocates; returns
    the setting (None where this is not glibc: ``malloc_setting`` then says why)."""
    import ctypes
    import ctypes.util
    import platform
    if platform.libc_ver()[0] != "glibc":
        _malloc.update(setting=None, why=f"C allocator not pinned: not glibc ({platform.libc_ver()[0] or 'unknown'})")
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                   MALLOC_TRIM_THRESHOLD)
    except (OSError, AttributeError) as e:
        ok, err = 0, e
    else:
        err = "mallopt returned 0"
    if not ok:
        _malloc.update(setting=None, why=f"C allocator not pinned: {err}")
        return None
    setting = (f"glibc mallopt: mmap_threshold={MALLOC_MMAP_THRESHOLD >> 20} MiB, "
               f"trim_threshold={MALLOC_TRIM_THRESHOLD >> 20} MiB")
    _malloc.update(setting=setting, why=None)
    return setting


def malloc_setting() -> tuple[str | None, str | None]:
    """(what :func:`pin_malloc` set in this process, or None; why not)."""
    return _malloc["setting"], _malloc["why"]


class CpuWindow:
    """``with CpuWindow() as w: ...``; then ``w.others_cores`` (None where /proc is unreadable, ``why`` says so)."""

    def __init__(self) -> None:
        self.others_cores: float | None = None
        self.why: str | None = None

    def __enter__(self) -> CpuWindow:
        self._m0, self._s0, self._t0 = _machine_busy(), _self_busy(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        m1, s1, wall = _machine_busy(), _self_busy(), time.monotonic() - self._t0
        if None in (self._m0, self._s0, m1, s1) or wall <= 0:
            self.why = "no /proc/stat: machine load not measured"
            return
        hz = os.sysconf("SC_CLK_TCK")
        others = (m1 - self._m0) - (s1 - self._s0)
        self.others_cores = max(0.0, others / hz / wall)


class GpuWindow:
    """NVML readings over a window on GPU ``index``; ``columns(images)`` gives the row's GPU columns."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.why: str | None = None
        self._nv = None
        self._e0 = None
        self.end: dict = {}

    def __enter__(self) -> GpuWindow:
        self._nv, self._h, self.why = open_device(self.index)
        if self._nv is None:
            return self
        try:
            self._e0 = self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h)
        except Exception as e:
            self.why = f"no NVML energy counter on this device ({type(e).__name__})"
        return self

    def _read(self, name: str, fn):
        try:
            self.end[name] = fn()
        except Exception:
            self.end[name] = None

    def __exit__(self, *exc) -> None:
        nv = self._nv
        if nv is None:
            return
        h = self._h
        if self._e0 is not None:
            self._read("energy_mj", lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h) - self._e0)
        self._read("gpu_sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))
        self._read("gpu_power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
        self._read("gpu_temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        self._read("gpu_throttle_reasons", lambda: throttle_names(nv, nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)))
        self._read("gpu_other_processes", lambda: sum(
            1 for p in nv.nvmlDeviceGetComputeRunningProcesses(h) if p.pid != os.getpid()))
        close(nv)

    def columns(self, images: int) -> dict:
        """GPU columns of a throughput row; energy per image over ``images`` images (mJ)."""
        e = self.end.get("energy_mj")
        cols = {k: self.end.get(k) for k in ("gpu_sm_clock_mhz", "gpu_power_w", "gpu_temp_c", "gpu_throttle_reasons",
                                             "gpu_other_processes")}
        cols["energy_mj_per_image"] = e / images if e is not None and images else None
        return cols


def throttle_names(nv, mask: int) -> str:
    """NVML's clock throttle reason bit mask as names, bit by bit (an alias joined by ``/``: pynvml names bit 0x2
    both ApplicationsClocksSetting and UserDefinedClocks); ``none`` when the clocks are not held back."""
    prefix, by_bit = "nvmlClocksThrottleReason", {}
    for n in dir(nv):
        v = getattr(nv, n)
        if n.startswith(prefix) and n not in (prefix + "All", prefix + "None") and isinstance(v, int) and mask & v:
            by_bit.setdefault(v, []).append(n[len(prefix):])
    return "+".join("/".join(sorted(names)) for _, names in sorted(by_bit.items())) or "none"


def flag(others_cores: float | None, cv: float | None, gpu_other_processes: int | None = None,
         contended: float = CONTENDED_CORES, unstable: float = UNSTABLE_CV) -> str:
    """``contended (...)`` / ``unstable (...)`` joined by ``; `` for a row that should not be trusted, else ''."""
    out = []
    if others_cores is not None and others_cores > contended:
        out.append(f"contended: others used {others_cores:.2f} cores")
    if gpu_other_processes:
        out.append(f"contended: {gpu_other_processes} other process(es) on the GPU")
    if cv is not None and cv == cv and cv > unstable:
        out.append(f"unstable: CV {cv:.2f}")
    return "; ".join(out)
