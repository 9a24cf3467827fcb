"""NVML, opened and closed in one place (``open_device``, ``close``: every NVML reader of the project goes through
them), and a background sampler: device memory used, utilisation, power, SM clock, at >= 20 Hz, in-process.

Without an NVIDIA GPU (or without pynvml) the sampler is inert and says why (``unavailable``).
"""
from __future__ import annotations

import threading
import time

NVML_UNAVAILABLE = "NVML unavailable ({}): no NVIDIA GPU, driver or pynvml"


def open_device(index: int = 0):
    """``(pynvml, handle, None)`` for GPU ``index``, NVML initialised (give it back with ``close``); ``(None, None,
    why)`` without an NVIDIA GPU, a driver or pynvml, NVML left closed."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as e:
        return None, None, NVML_UNAVAILABLE.format(type(e).__name__)
    try:
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index), None
    except Exception as e:
        close(pynvml)
        return None, None, NVML_UNAVAILABLE.format(type(e).__name__)


def close(nv) -> None:
    """Shut NVML down after ``open_device`` (nothing when it gave no pynvml); never raises."""
    if nv is None:
        return
    try:
        nv.nvmlShutdown()
    except Exception:
        pass


class Sampler:
    """Use as a context manager around the measured steps; ``samples`` holds dicts, ``summary()`` the figures."""

    def __init__(self, hz: float = 50.0, index: int = 0) -> None:
        self.period = 1.0 / hz
        self.index = index
        self.samples: list[dict] = []
        self.unavailable: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml = None

    def __enter__(self) -> Sampler:
        self._nvml, self._handle, self.unavailable = open_device(self.index)
        if self._nvml is None:
            return self
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        nv, h = self._nvml, self._handle
        while not self._stop.is_set():
            t = time.monotonic() - self._t0
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                util = nv.nvmlDeviceGetUtilizationRates(h)
                self.samples.append({
                    "t_s": t, "mem_used_mib": mem.used / 2**20, "util_pct": util.gpu,
                    "power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0,
                    "sm_clock_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)})
            except Exception as e:  # keep the job alive; say what happened
                self.unavailable = f"NVML read failed: {e}"
                return
            self._stop.wait(self.period)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        close(self._nvml)

    def summary(self) -> dict:
        s = self.samples
        if not s:
            return {"nvml_peak_used_mib": None, "nvml_mean_util_pct": None, "nvml_max_power_w": None,
                    "nvml_mean_sm_clock_mhz": None, "nvml_samples": 0}
        return {"nvml_peak_used_mib": max(x["mem_used_mib"] for x in s),
                "nvml_mean_util_pct": sum(x["util_pct"] for x in s) / len(s),
                "nvml_max_power_w": max(x["power_w"] for x in s),
                "nvml_mean_sm_clock_mhz": sum(x["sm_clock_mhz"] for x in s) / len(s), "nvml_samples": len(s)}
