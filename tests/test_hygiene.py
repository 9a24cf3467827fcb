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
