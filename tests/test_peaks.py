"""bench.peaks and bench.core.roofs: the roofs' accounting, the cache per machine, the theoretical peak read from
/proc/cpuinfo, the command on a cached machine, one library measured in its own process."""
import json

import pytest

from bench.core import roofs

CPUINFO = "processor : 0\nmodel name : Test CPU\ncpu MHz : 2000.000\nflags : fpu sse avx avx2 fma avx512f\n"


def test_cpu_theoretical_reads_flags_and_clock():
    t = roofs.cpu_theoretical(2, CPUINFO)
    assert t["gflops"]["fp32"] == pytest.approx(2 * 2.0 * 64)  # 2 cores x 2 GHz x 64 fp32 FLOPs/cycle (AVX-512)
    assert t["upper_bound"] is False and "current clock" in t["basis"]  # no maximum clock given: not an upper bound
    avx2 = roofs.cpu_theoretical(4, CPUINFO.replace(" avx512f", ""))
    assert avx2["gflops"]["fp32"] == pytest.approx(4 * 2.0 * 32)
    assert roofs.cpu_theoretical(1, "model name : x\n")["gflops"] == {}


class _Stub:
    threads, library, gemm_name, triad_name = 3, "stub 1.0", "stub.mm", "stub.triad"

    def __init__(self):
        self.sizes = []

    def gemm(self, n, precision):
        if precision == "fp16":
            raise TypeError("no fp16 here")
        self.sizes.append(("gemm", n))
        return (lambda: None), (lambda: None)

    def triad(self, elements):
        self.sizes.append(("triad", elements))
        return (lambda: None), (lambda: None)


def test_measure_roofs_counts_flops_and_bytes(monkeypatch):
    """Each call taken as one second: the roofs are the work counted, 2 n^3 FLOPs and 12 bytes per triad element."""
    monkeypatch.setattr(roofs, "best_rate", lambda fn, work, sync=None, min_s=0, max_reps=0: work)
    monkeypatch.setattr(roofs, "llc_bytes", lambda: 32 * 2**20)
    k = _Stub()
    r = roofs.measure_roofs(k, "cpu", ("fp32", "fp16"), sweep=True)
    assert r["gemm_gflops"] == {"fp32": 2 * 2048 ** 3 / 1e9} and "fp16" in r["skipped"]
    per_array = 128 * 2**20  # 4 x the 32 MiB LLC
    assert ("triad", per_array // 4) in k.sizes and r["triad_gbs"] == pytest.approx(3 * per_array / 1e9)
    assert r["threads"] == 3 and r["library"] == "stub 1.0" and "stub.mm" in r["method"]
    ws = [s["working_set_kib"] for s in r["sweep"]]
    assert ws[0] == 48 and ws[-1] * 2**10 <= 3 * per_array and all(b == 4 * a for a, b in zip(ws, ws[1:]))


def test_cache_is_per_machine_and_device(tmp_path, monkeypatch):
    path = tmp_path / "roofs.json"
    monkeypatch.setenv(roofs.ENV, str(path))
    entry = {"libraries": {"torch": {"gemm_gflops": {"fp32": 100.0}}}, "bandwidth_gbs": 10.0}
    roofs.store("m1 (cpu x2)", "cpu", entry)
    roofs.store("m2 (cpu x4)", "cpu", {**entry, "bandwidth_gbs": 20.0})
    assert roofs.memory_roof(roofs.cached("m1 (cpu x2)", "cpu")) == 10.0
    assert roofs.memory_roof(roofs.cached("m2 (cpu x4)", "cpu")) == 20.0
    assert roofs.cached("m1 (cpu x2)", "cuda") is None and roofs.cached("m3", "cpu") is None
    assert roofs.compute_roof(entry, "torch", "fp32") == 100.0 and roofs.compute_roof(entry, "jax", "fp32") is None
    from bench.core.env import this_machine
    assert "null_reason" in roofs.for_run("cpu")  # this machine is not in the cache
    roofs.store(this_machine(), "cpu", entry)
    run = roofs.for_run("cpu")
    assert run["machine"] == this_machine() and run["bandwidth_gbs"] == 10.0


def test_command_prints_cached_roofs_without_measuring(tmp_path, monkeypatch, capsys):
    import bench.peaks as peaks
    from bench.core.env import this_machine
    monkeypatch.setenv(roofs.ENV, str(tmp_path / "roofs.json"))
    entry = {"device": "cpu", "device_name": "x", "measured_at": "2026-12-06T00:00:00+00:00", "sweep": [],
             "libraries": {"torch": {"gemm_gflops": {"fp32": 123.4}, "triad_gbs": 9.9, "threads": 2, "library": "t"}},
             "bandwidth_gbs": 9.9, "bandwidth_library": "torch", "theoretical": {"gflops": {"fp32": 300.0}}}
    roofs.store(this_machine(), "cpu", entry)
    monkeypatch.setattr(peaks, "measure", lambda *a, **k: pytest.fail("measured although cached"))
    assert peaks.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "fp32 123.4 GFLOP/s" in out and "theoretical (beside, not a roof): fp32 300.0" in out


def test_one_library_measured_in_its_own_process(tmp_path, monkeypatch):
    """torch's kernels in a child process with its stack's environment (quick sizes): a GEMM and a triad roof,
    at most the theoretical peak where that is an upper bound."""
    import bench.peaks as peaks
    monkeypatch.setenv(roofs.ENV, str(tmp_path / "roofs.json"))
    e = peaks.measure("cpu", quick=True, only=("torch",))
    t = e["libraries"]["torch"]
    assert t["gemm_gflops"]["fp32"] > 0 and t["triad_gbs"] > 0 and t["threads"] >= 1, t
    assert e["bandwidth_library"] == "torch" and e["sweep"], e
    theo = e["theoretical"]
    if theo.get("upper_bound"):
        assert t["gemm_gflops"]["fp32"] <= theo["gflops"]["fp32"]
    json.dumps(e)  # cacheable
