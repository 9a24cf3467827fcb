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


def test_reused_order_keeps_one_stacks_reusable_jobs_together():
    from bench.pipeline.pool import reused_order
    t = lambda fw, be, m="train": Job("throughput", "resnet20_v1", fw, be, "fp32", 8, m, device="cpu")  # noqa: E731
    mem = Job("memory", "resnet20_v1", "torch", None, "fp32", 8, device="cpu")
    prof = Job("profile", "resnet20_v1", "torch", None, "fp32", 8, device="cpu")
    todo = [t("torch", None), t("keras", "tensorflow"), t("torch", None, "infer"), mem, prof]
    assert reused_order(todo) == [todo[0], todo[2], todo[1], todo[3], todo[4]]  # a profile starts its own process


def test_reused_worker_runs_a_stacks_jobs_and_each_job_says_so(tmp_path):
    """--isolation reused: two throughput jobs of one stack share one worker (the second pays no process start),
    the memory job between them in the plan runs fresh; every job's phases still cover its wall time."""
    from bench.pipeline.executors import LocalExecutor, RunContext
    jobs = [Job("throughput", "resnet20_v1", "torch", None, "fp32", 4, m, steps=2, max_warmup=10, device="cpu")
            for m in ("train", "infer")]
    jobs.insert(1, Job("memory", "resnet20_v1", "torch", None, "fp32", 4, steps=1, device="cpu"))
    ran = list(LocalExecutor().run(jobs, RunContext(tmp_path, "r1", None, 600, "reused"), lambda j: None))
    assert [s for _, s in ran] == ["ok", "ok", "ok"] and [j for j, _ in ran] == [jobs[0], jobs[2], jobs[1]]
    with open(tmp_path / "jobs.csv", newline="") as f:
        rows = {r["job_id"]: r for r in csv.DictReader(f)}
    first, second, mem = (rows[j.job_id] for j in (jobs[0], jobs[2], jobs[1]))
    assert (first["isolation"], first["worker_jobs"], second["isolation"], second["worker_jobs"]) == ("reused", "0", "reused", "1")
    assert mem["isolation"] == "fresh"
    assert float(second["start_s"]) < 0.5 * float(first["start_s"])  # imports paid once
    for r in rows.values():
        named = sum(float(r[f"{p}_s"]) for p in phases.PHASES)
        assert abs(float(r["wall_s"]) - named) <= 0.05 * float(r["wall_s"]), r
    with open(tmp_path / "throughput.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok", "ok"]


def _history(root: Path, run: str, rows: list[tuple[str, float]], machine=None, **meta) -> None:
    import json

    from bench.pipeline.estimate import machine as here
    from bench.results.schema import append_row
    d = root / run
    d.mkdir(parents=True)
    host, cpu, cores = machine or here()
    (d / "run_meta.json").write_text(json.dumps({"hostname": host, "cpu": cpu, "cpu_count": cores, **meta}))
    for job_id, wall in rows:
        append_row(d / "jobs.csv", "jobs", {"run_id": run, "job_id": job_id, "status": "ok", "wall_s": wall,
                                           "isolation": "fresh"})


def test_estimates_come_from_this_machines_history_else_the_flop_model(tmp_path):
    from bench.pipeline.estimate import estimate
    from bench.pipeline.suites import Options, estimate_seconds, expand
    jobs = expand("smoke", Options(frameworks=("torch",), gpu=False))
    _history(tmp_path, "a", [(jobs[0].job_id, 10.0), (jobs[1].job_id + "/r2", 4.0)])
    _history(tmp_path, "b", [(jobs[0].job_id, 20.0), (jobs[1].job_id, 6.0)], suite="smoke", run_wall_s=40.0)
    _history(tmp_path, "other", [(jobs[2].job_id, 99.0)], machine=("elsewhere", "cpu", 64))
    est = estimate(jobs, tmp_path)
    assert est.seconds[jobs[0].job_id] == 15.0 and est.seconds[jobs[1].job_id] == 5.0  # repeats pooled
    assert est.source[jobs[2].job_id] == "flops" and est.seconds[jobs[2].job_id] == estimate_seconds(jobs[2])
    from bench.pipeline.estimate import run_overheads
    assert run_overheads(tmp_path) == {"smoke": [14.0]}  # the run's time outside its jobs
    assert est.says([j.job_id for j in jobs[:2]]).startswith("measured") and "FLOP model" in est.says(
        [j.job_id for j in jobs])


def test_a_plan_that_does_not_fit_the_device_says_so(capsys, tmp_path):
    from bench.run import main
    assert main(["--suite", "cifar10-full", "--dry-run", "--device", "cpu", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("This plan does not fit a CPU: about ") and "--suite smoke" in out[-1]
    assert out[-1].count(". ") == 0  # one sentence
    assert main(["--suite", "smoke", "--dry-run", "--device", "cpu", "--out", str(tmp_path)]) == 0
    assert "does not fit" not in capsys.readouterr().out


def test_where_the_runs_time_went_section(tmp_path):
    """The report part: phases summed per job kind and implementation, the timed share, the cold start table."""
    from bench.report.sections.harness import section_harness
    from bench.results.schema import append_row
    for kind, fw, be, mode, first, timed in (("throughput", "torch", "torch", "eager", 0.5, 2.0),
                                             ("throughput", "keras", "tensorflow", "nojit", 3.0, 2.0),
                                             ("memory", "torch", "torch", "eager", 0.0, 1.0)):
        ph = {"start_s": 2.0, "data_s": 0.1, "build_s": 1.0, "first_step_s": first, "warmup_s": 1.0, "timed_s": timed,
              "write_s": 0.4, "other_s": 0.0}
        append_row(tmp_path / "jobs.csv", "jobs", {"run_id": "r", "job_id": f"{kind}/{fw}", "status": "ok", "model": "m",
                                                   "framework": fw, "backend": be, "exec_mode": mode, "job_kind": kind,
                                                   "isolation": "fresh", "worker_jobs": 0, "wall_s": sum(ph.values()),
                                                   **ph})
    s = section_harness({"dir": tmp_path}, tmp_path)
    assert "3 jobs (3 fresh)" in s.text[0] and "timed work 5 s" in s.text[0]
    (_, phases_t), (_, cold) = s.tables
    assert list(phases_t.implementation) == ["torch eager", "keras/tensorflow nojit", "torch eager"]
    assert dict(zip(cold.implementation, cold["cold start / compile, s (median)"])) == {
        "keras/tensorflow nojit": 3.0, "torch eager": 0.5}
    assert (tmp_path / "harness_phases.png").exists()
    assert "No jobs.csv" in section_harness({"dir": tmp_path / "none"}).text[0]


def test_every_suite_is_a_table_of_known_measures_and_model_sets():
    from bench.pipeline.suites import MODEL_SETS, SUITE_TABLE, SUITES, Options, _part_jobs
    assert set(SUITE_TABLE) == set(SUITES)
    for suite, parts in SUITE_TABLE.items():
        for part in parts:
            assert part.models in MODEL_SETS, (suite, part)
            _part_jobs(part, Options(gpu=False, keras_backends=("tensorflow",)), ["resnet20_v1", "densenet40_k12_memeff"])
    smoke = SUITE_TABLE["smoke"]
    assert [p.measure for p in smoke] == ["throughput", "memory", "memory", "epochs", "profile"]
