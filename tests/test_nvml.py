"""NVML readers (bench.core.nvml.open_device / close, hygiene.GpuWindow, env.nvml_info, nvml.Sampler) against a
stand-in pynvml module: the project has no GPU in CI, so this is where the GPU path's arithmetic and its
init/shutdown pairing are checked. The throttle-reason constants are the real pynvml's."""
from __future__ import annotations

import os
import sys
import time
import types

import pynvml
import pytest

from bench.core import env, hygiene, nvml


class FakeNvml(types.ModuleType):
    """pynvml's calls used by the project, on one GPU; counts init/shutdown; ``fail`` names calls that raise."""

    def __init__(self, fail=()):
        super().__init__("pynvml")
        for n in dir(pynvml):
            if n.startswith(("nvmlClocksThrottleReason", "NVML_CLOCK_SM", "NVML_TEMPERATURE_GPU")):
                setattr(self, n, getattr(pynvml, n))
        self.fail, self.inits, self.shutdowns, self.energy = set(fail), 0, 0, 1_000_000

    def _call(self, name):
        if name in self.fail:
            raise RuntimeError(f"{name} failed")

    def nvmlInit(self):
        self._call("init")
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        self._call("handle")
        return ("gpu", i)

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self._call("energy")
        self.energy += 25_000  # mJ drawn between two reads
        return self.energy

    def nvmlDeviceGetClockInfo(self, h, kind):
        assert kind == pynvml.NVML_CLOCK_SM
        return 1980

    def nvmlDeviceGetPowerUsage(self, h):
        return 450_000  # mW

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return pynvml.nvmlClocksThrottleReasonSwPowerCap | pynvml.nvmlClocksThrottleReasonUserDefinedClocks

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [types.SimpleNamespace(pid=os.getpid()), types.SimpleNamespace(pid=os.getpid() + 1)]

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlSystemGetDriverVersion(self):
        return "570.1"

    def nvmlDeviceGetCount(self):
        return 1

    def nvmlDeviceGetMemoryInfo(self, h):
        return types.SimpleNamespace(used=3 * 2**30)

    def nvmlDeviceGetUtilizationRates(self, h):
        return types.SimpleNamespace(gpu=97)


@pytest.fixture
def fake(monkeypatch):
    def install(**kw):
        f = FakeNvml(**kw)
        monkeypatch.setitem(sys.modules, "pynvml", f)
        return f
    return install


def test_gpu_window_columns_from_nvml(fake):
    nv = fake()
    with hygiene.GpuWindow() as w:
        pass
    cols = w.columns(images=500)
    assert w.why is None and nv.inits == nv.shutdowns == 1
    assert cols["energy_mj_per_image"] == 25_000 / 500  # the counter's difference over the window, per image
    assert (cols["gpu_sm_clock_mhz"], cols["gpu_power_w"], cols["gpu_temp_c"]) == (1980, 450.0, 61)
    assert cols["gpu_other_processes"] == 1  # this process is not another
    # one name per bit, pynvml's alias of bit 0x2 joined by "/"
    assert cols["gpu_throttle_reasons"] == "ApplicationsClocksSetting/UserDefinedClocks+SwPowerCap"


def test_gpu_window_without_energy_counter_gives_a_reason_and_the_rest(fake):
    nv = fake(fail={"energy"})
    with hygiene.GpuWindow() as w:
        pass
    cols = w.columns(images=500)
    assert cols["energy_mj_per_image"] is None and "no NVML energy counter" in w.why
    assert cols["gpu_sm_clock_mhz"] == 1980 and nv.inits == nv.shutdowns == 1


@pytest.mark.parametrize("where", ["init", "handle"])
def test_no_gpu_leaves_nvml_closed_and_says_why(fake, where):
    nv = fake(fail={where})
    assert nvml.open_device(0)[:2] == (None, None) and "NVML unavailable (RuntimeError)" in nvml.open_device(0)[2]
    assert nv.shutdowns == nv.inits  # a handle that failed after init still shuts NVML down
    with hygiene.GpuWindow() as w:
        pass
    assert "NVML unavailable" in w.why and set(w.columns(10).values()) == {None}
    assert env.nvml_info() == {}
    with nvml.Sampler(hz=200) as s:
        pass
    assert "NVML unavailable" in s.unavailable and s.summary()["nvml_samples"] == 0
    assert nv.shutdowns == nv.inits


def test_nvml_info_and_sampler(fake):
    nv = fake()
    assert env.nvml_info() == {"gpu_name": "NVIDIA H200", "gpu_driver": "570.1", "gpu_count": 1}
    with nvml.Sampler(hz=200) as s:
        deadline = time.monotonic() + 10
        while not s.samples and time.monotonic() < deadline:
            time.sleep(0.005)
    out = s.summary()
    assert s.unavailable is None and out["nvml_samples"] >= 1
    assert (out["nvml_peak_used_mib"], out["nvml_mean_util_pct"], out["nvml_max_power_w"]) == (3072.0, 97.0, 450.0)
    assert nv.inits == nv.shutdowns == 2


def test_throttle_names_none_when_not_held_back():
    assert hygiene.throttle_names(pynvml, 0) == "none"
    assert hygiene.throttle_names(pynvml, pynvml.nvmlClocksThrottleReasonHwSlowdown) == "HwSlowdown"
