"""Measurement hygiene: others' CPU load over a window, the flag, and a contended job flagged in its row."""
import csv
import subprocess
import sys

import pytest

from bench.core import hygiene
from bench.core.hygiene import CpuWindow, flag


def test_cpu_window_counts_other_processes_only(monkeypatch):
    assert hygiene._machine_busy() > 0 and hygiene._self_busy() > 0  # the real readers work here (Linux)
    hz = hygiene.os.sysconf("SC_CLK_TCK")
    machine, own, clock = iter([0, 5 * hz]), iter([0, 2 * hz]), iter([0.0, 2.0])
    monkeypatch.setattr(hygiene, "_machine_busy", lambda: next(machine))
    monkeypatch.setattr(hygiene, "_self_busy", lambda: next(own))
    monkeypatch.setattr(hygiene.time, "monotonic", lambda: next(clock))
    with CpuWindow() as w:
        pass
    assert w.others_cores == pytest.approx(1.5)  # (5 s machine - 2 s ours) over 2 s of wall time


def test_cpu_window_without_proc_says_why(monkeypatch):
    monkeypatch.setattr(hygiene, "_machine_busy", lambda: None)
    with CpuWindow() as w:
        pass
    assert w.others_cores is None and "not measured" in w.why


def test_flag():
    assert flag(0.1, 0.02) == ""
    assert flag(1.3, 0.02) == "contended: others used 1.30 cores"
    assert flag(None, 0.25) == "unstable: CV 0.25"
    assert flag(0.9, 0.3, gpu_other_processes=2).count(";") == 2
    assert flag(None, float("nan")) == ""


# a train step's pattern: 16 blocks of 2 MiB allocated, written, freed, ten times over; the minor page faults counted
_REFAULT = """
import ctypes, json, resource, sys
if sys.argv[1] == "worker":
    from bench.core.job import Job
    from bench.pipeline.worker import configure_env
    configure_env(Job("throughput", "resnet20_v1", "torch", None, "fp32", 4, device="cpu"))
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
def step():
    blocks = [libc.malloc(2 << 20) for _ in range(16)]
    for b in blocks:
        libc.memset(b, 1, 2 << 20)
    for b in blocks:
        libc.free(b)
step(); step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
from bench.core.hygiene import malloc_setting
print("JSON" + json.dumps([resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0, malloc_setting()[0]]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and minor-fault counts: Linux")
def test_the_worker_pins_the_allocator_so_freed_blocks_are_not_faulted_in_again():
    """A job's process reuses a step's freed blocks: with glibc's default thresholds the heap above 4 MiB free is
    handed back and every page is faulted in again the next step (8,160 faults a step for 32 MiB here)."""
    import json
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[1])
    out = {}
    for how in ("plain", "worker"):
        p = subprocess.run([sys.executable, "-c", _REFAULT, how], capture_output=True, text=True, timeout=120,
                           cwd=root, env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, p.stderr[-2000:]
        out[how] = json.loads(p.stdout.split("JSON", 1)[1])
    (plain, unset), (pinned, setting) = out["plain"], out["worker"]
    assert unset is None and "mmap_threshold=32 MiB" in setting
    assert plain > 0.8 * 10 * (32 << 20) // 4096  # 32 MiB of 4 KiB pages, faulted in again in (nearly) every step
    assert pinned < plain / 20


@pytest.mark.slow
def test_a_job_run_beside_a_saturating_process_is_flagged_contended(tmp_path):
    from bench.core.job import Job
    from bench.measures.throughput import run_throughput
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        job = Job("throughput", "plain20", "torch", None, "fp32", 2, "infer", steps=5, max_warmup=10, device="cpu")
        run_throughput(job, tmp_path, job.base_row("r"), None)
    finally:
        for p in hogs:
            p.kill()
            p.wait()
    row = list(csv.DictReader(open(tmp_path / "throughput.csv")))[-1]
    assert float(row["cpu_others_load_cores"]) > 0.5 and "contended" in row["hygiene_flag"]
    assert int(row["cpu_threads"]) >= 1 and row["step_cv"] and row["warmup_converged"] in ("true", "false")
    assert row["energy_mj_per_image"] == "" and "CPU job" in row["null_reason"]
