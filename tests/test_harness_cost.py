"""The harness's own cost (issue 33): every job's phases in jobs.csv, the model table from counts, estimates."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core import phases
from bench.core.job import Job

ROOT = Path(__file__).resolve().parents[1]


def test_phase_clock_accumulates_in_order():
    clock = phases.PhaseClock(t0=0.0)
    clock.since = 0.0
    clock.spent = {"start": 1.0}
    clock.current = "build"
    clock.enter("timed")
    clock.enter("build")  # a phase entered twice adds up
    spent = clock.close()
    assert set(spent) == {"start", "build", "timed"} and spent["build"] > 1e6  # since 0.0: the epoch
    with pytest.raises(ValueError, match="unknown phase"):
        clock.enter("compile")


def test_phases_sum_to_wall_time_of_a_real_job(tmp_path):
    """One real throughput job in its own process: its jobs.csv row's phases cover its wall time within 5%."""
    from bench.pipeline.jobs import run_job
    job = Job("throughput", "resnet20_v1", "torch", None, "fp32", 4, steps=2, max_warmup=10, device="cpu")
    status, _ = run_job(job, tmp_path, "r1", None, 600)
    assert status == "ok"
    with open(tmp_path / "jobs.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["job_id"] == job.job_id and row["isolation"] == "fresh" and row["exec_mode"] == "eager"
    wall = float(row["wall_s"])
    named = sum(float(row[f"{p}_s"]) for p in phases.PHASES)
    assert all(float(row[f"{p}_s"]) > 0 for p in ("start", "build", "first_step", "warmup", "timed", "write"))
    assert abs(wall - named) <= 0.05 * wall, row
    assert float(row["timed_s"]) >= 2.0 * 0.95  # MIN_TIMED_S of samples
    assert not phases.path_for(tmp_path, job.job_id).exists()  # read, then removed


def test_jobs_rows_are_not_done_markers(tmp_path):
    """jobs.csv says how a job ran, never that it is done (--resume reads the figures' CSVs)."""
    from bench.pipeline.jobs import done_jobs, record_job
    job = Job("throughput", "resnet20_v1", "torch", None, "fp32", 4, device="cpu")
    record_job(job, tmp_path, "r1", "ok", 0.0, 1.0, "fresh", 0)
    with open(tmp_path / "jobs.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["wall_s"] == "1" and row["timed_s"] == "" and "no phase times" in row["null_reason"]
    assert done_jobs(tmp_path)[0] == set()


def test_models_table_lists_every_model_without_building():
    """``python -m bench.models`` reads the count table: every registered model, no model built (no torch import)."""
    code = ("import sys, bench.models as m; m.main([]); "
            "assert 'torch' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from bench.zoo import list_models
    assert all(f"\n{n} " in out.stdout for n in list_models())


@pytest.mark.parametrize("name", ["resnet20_v1", "densenet40_k12_memeff", "resnet56_v2", "plain20"])
def test_count_table_matches_the_built_twins(name):
    """The table's counts are the built PyTorch twin's; the Keras twin has the same parameters."""
    pytest.importorskip("torch")
    from bench.zoo import build
    from bench.zoo.counts import counted, flops_per_image, keras_param_counts, torch_param_counts
    tr, nt, fwd, train = counted(name)
    net = build(name, "torch")
    assert torch_param_counts(net) == (tr, nt)
    assert flops_per_image(net) == pytest.approx((fwd, train), rel=1e-9)
    if name == "resnet20_v1":
        pytest.importorskip("keras")
        assert keras_param_counts(build(name, "keras")) == (tr, nt)


def test_count_table_covers_the_registry():
    from bench.zoo import list_models
    from bench.zoo.count_table import COUNTS
    assert sorted(COUNTS) == sorted(list_models())
