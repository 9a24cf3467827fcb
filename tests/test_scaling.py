"""Data parallelism (issue #36): parity across replicas per stack, and the scaling command's bad input.

The parity run is one call of ``bench.twins.dp_parity`` (resnet8 at 8x8, global batch 8, 3 steps, float64,
one process per case) shared by the checks below.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def parity():
    from bench.twins.dp_parity import dp_parity
    rows = dp_parity("resnet20_v1", dict(depth=8, input_size=8), replicas=2, steps=3, batch=8, precision="fp64")
    return {(r["kind"], tuple(r["stacks"]), r["bn"]): r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["keras-jax", "keras-tensorflow"])
def test_sync_bn_two_replicas_train_as_one(parity, stack):
    """Synchronised BN: 3 float64 steps on 2 replicas at global batch 8 give the weights of 1 replica at 8
    within 1e-7 (TF: MirroredStrategy + synchronized=True; JAX: DataParallel, BN always global)."""
    r = parity["replicas", (stack,), "sync"]
    assert r["ok"] is True and r["bound"] == 1e-7, r
    assert r["bn_stats_diff"] <= 1e-7, r  # TF: the moving variance's unbiased correction uses the global count


@pytest.mark.slow
def test_sync_bn_twins_agree(parity):
    r = parity["twins", ("keras-jax", "keras-tensorflow"), "sync"]
    assert r["ok"] is True, r


@pytest.mark.slow
def test_missing_modes_are_named_not_hidden(parity):
    """PyTorch on a CPU has no SyncBatchNorm (gloo), JAX's DataParallel no local BN: rows with null and why."""
    torch_sync = parity["replicas", ("pytorch",), "sync"]
    jax_local = parity["replicas", ("keras-jax",), "local"]
    assert torch_sync["weights_diff"] is None and "SyncBatchNorm" in torch_sync["reason"]
    assert jax_local["weights_diff"] is None and "global batch" in jax_local["reason"]


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["pytorch", "keras-tensorflow"])
def test_local_bn_difference_is_reported(parity, stack):
    """Local BN: each replica normalises its own 4 images, so 2 replicas train another network than 1;
    the difference is reported (unbounded), and it is far from rounding."""
    r = parity["replicas", (stack,), "local"]
    assert r["bound"] is None and r["ok"] is None
    assert r["weights_diff"] > 1e-3 and r["bn_stats_diff"] > 1e-3, r


@pytest.mark.slow
def test_local_bn_twins_agree(parity):
    """Under the same (local) mode DDP and MirroredStrategy split the batch alike: the twins agree in float64."""
    r = parity["twins", ("pytorch", "keras-tensorflow"), "local"]
    assert r["ok"] is True and r["weights_diff"] <= 1e-7, r


def _scaling(*args, tmp_path):
    return subprocess.run([sys.executable, "-m", "bench.scaling", "--results-dir", str(tmp_path / "res"), *args],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("args,words", [
    (["--replicas", f"1,{(os.cpu_count() or 1) + 1}"], "replicas asked for"),
    (["--stacks", "keras-torch"], "no data-parallel path"),
    (["--stacks", "pytorch", "--replicas", "1,two"], "comma-separated"),
    (["--device", "cuda"], "CPU replicas only"),
    (["--replicas", "0"], "counts of 1 or more"),
    (["--models", "nosuch*"], "matches no model"),
    (["--per-replica-batch", "0"], "take 1 or more"),
])
def test_bad_input_exits_2_before_any_job(tmp_path, args, words):
    p = _scaling(*args, tmp_path=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], p.stderr
    assert not (tmp_path / "res").exists()  # no run folder: no job ran


def test_rows_and_report_section(tmp_path):
    """Rows of given step times: efficiency = median(1 replica) / median(R) with the bootstrap interval around
    it; the section draws them with the CPU caveat and the parity table with its null rows' reasons."""
    import json

    from bench.measures.scaling import rows_for
    from bench.report.sections.scaling import CPU_CAVEAT, section_scaling
    from bench.results.schema import FILES, append_row
    one, two = [0.10, 0.11, 0.10, 0.12, 0.10, 0.11], [0.20, 0.21, 0.20, 0.22, 0.20, 0.19]
    rows = rows_for("keras-jax", {1: one, 2: two, 4: None}, {4: "boom"}, 8, "cpu")
    by = {r["replicas"]: r for r in rows}
    assert by[2]["efficiency"] == pytest.approx(0.105 / 0.20)
    assert by[2]["efficiency_lo"] <= by[2]["efficiency"] <= by[2]["efficiency_hi"] < 1
    assert by[2]["batch_size"] == 16 and by[2]["collective"] == "XLA" and by[2]["bn_mode"] == "sync"
    assert by[4]["status"] == "error" and by[4]["error"] == "boom" and "efficiency" not in by[4]
    for r in rows:
        append_row(tmp_path / FILES["scaling"], "scaling", dict(r, model="resnet20_v1"))
    (tmp_path / "dp_parity.json").write_text(json.dumps([dict(
        kind="replicas", stacks=["pytorch"], bn="sync", replicas=2, weights_diff=None, bn_stats_diff=None,
        bound=None, ok=None, reason="no SyncBatchNorm on a CPU")]))
    s = section_scaling({"dir": tmp_path})
    assert CPU_CAVEAT in s.text
    (cap, tab), (pcap, ptab) = s.tables
    assert list(tab.replicas) == [1, 2, 4] and tab["efficiency [95% CI]"].iloc[1].startswith("0.53 [")
    assert ptab.note.iloc[0] == "no SyncBatchNorm on a CPU"
    import pandas as pd

    from bench.report.sections.scaling import scaling_answers
    (line,) = scaling_answers(pd.DataFrame(rows).assign(model="resnet20_v1"))
    assert "keras-jax 0.53 [" in line and "at 2" in line and "not a scaling result" in line  # 4: no efficiency


@pytest.mark.slow
def test_scaling_command_writes_rows(tmp_path):
    """The command end to end for DDP (gloo): 1 and 2 replicas, rows with efficiency and interval."""
    from bench.results.read import read_table
    p = _scaling("--stacks", "pytorch", "--steps", "3", "--input-size", "8", "--per-replica-batch", "4",
                 tmp_path=tmp_path)
    (run,) = (tmp_path / "res").iterdir()
    df = read_table(run / "scaling.csv", "scaling").frame()
    assert p.returncode == 0, (p.stdout[-1000:], p.stderr[-2000:], df.get("error"))
    assert list(df.replicas) == [1, 2] and set(df.status) == {"ok"} and set(df.collective) == {"gloo"}
    assert df.efficiency.notna().all() and (df.efficiency_lo <= df.efficiency).all()
    assert (run / "run_meta.json").exists()


def test_a_failed_job_is_a_row_with_its_error_said_on_stderr_and_exit_1(tmp_path, monkeypatch):
    """A job whose process dies: its row says the error, stderr names the job, the command exits 1."""
    import bench.scaling as sc
    from bench.results.read import read_table
    monkeypatch.setattr(sc, "_spawn", lambda st, r, cfg, device: ([0.1, 0.1, 0.1], None, {}) if r == 1
                        else (None, "RuntimeError: Gloo connectFullMesh failed", {}))
    rc = sc.main(["--results-dir", str(tmp_path), "--stacks", "pytorch", "--steps", "3"])
    assert rc == 1
    (run,) = tmp_path.iterdir()
    df = read_table(run / "scaling.csv", "scaling").frame().set_index("replicas")
    assert df.loc[2, "status"] == "error" and "connectFullMesh" in df.loc[2, "error"]
    assert df.loc[1, "status"] == "ok"


# ------------------------------------------------------------------ the scaling suite inside bench.run (a job field)

def test_the_suite_plans_one_job_per_stack_and_replica_count():
    """The suite is data: resnet20_v1, every installed stack with a data-parallel path (Keras on torch has none),
    1 and 2 replicas; a replica count is a field of the job, in its id and its rows' batch."""
    import importlib.util

    from bench.pipeline.suites import Options, expand
    jobs = expand("scaling", Options(gpu=False))
    tags = {j.stack.job_tag for j in jobs}
    want = {"torch", "keras-tensorflow"} | ({"keras-jax"} if importlib.util.find_spec("jax") else set())
    assert tags == want and "keras-torch" not in tags
    assert sorted({j.replicas for j in jobs}) == [1, 2] and {j.model for j in jobs} == {"resnet20_v1"}
    x2 = next(j for j in jobs if j.replicas == 2 and j.framework == "torch")
    assert x2.job_id.endswith("/x2") and x2.job_id != next(j for j in jobs if j.replicas == 1).job_id
    row = x2.base_row("r")
    assert (row["replicas"], row["per_replica_batch"], row["batch_size"]) == (2, x2.batch_size, 2 * x2.batch_size)
    # --replicas narrows the counts (1 always added, first: the others are measured against it)
    jobs = expand("scaling", Options(gpu=False, frameworks=("torch",), replicas=(2,), steps=3, batch_sizes=(4,)))
    assert [(j.replicas, j.steps, j.batch_size) for j in jobs] == [(1, 3, 4), (2, 3, 4)]


@pytest.mark.parametrize("args,words", [
    (["--replicas", f"1,{(os.cpu_count() or 1) + 1}"], "replicas asked for"),
    (["--keras-backend", "torch", "--frameworks", "keras"], "no data-parallel path"),
    (["--replicas", "1,two"], "comma-separated counts"),
    (["--replicas", "0"], "counts of 1 or more"),
])
def test_bench_run_refuses_a_scaling_plan_it_cannot_run_before_any_job(tmp_path, args, words):
    p = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "scaling", "--device", "cpu", *args,
                        "--out", str(tmp_path / "res"), "--no-report"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and words in errors[0], p.stderr
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


@pytest.mark.slow
def test_bench_run_scaling_suite_writes_rows_phases_and_the_report(tmp_path):
    """bench.run --suite scaling (PyTorch DDP on gloo, 1 and 2 replicas): rows with efficiency and its interval
    against the run's 1-replica row, each job's phases in jobs.csv (its replicas' timed steps as timed work), and
    the report's Scaling figure with the CPU caveat."""
    from bench.report.sections.scaling import CPU_CAVEAT
    from bench.results.read import read_table
    p = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "scaling", "--device", "cpu", "--frameworks",
                        "torch", "--steps", "3", "--batch-sizes", "4", "--out", str(tmp_path / "res"),
                        "--reports", str(tmp_path / "rep")], capture_output=True, text=True, cwd=ROOT, timeout=900)
    (run,) = (tmp_path / "res").iterdir()
    df = read_table(run / "scaling.csv", "scaling").frame().set_index("replicas")
    assert p.returncode == 0, (p.stderr[-2000:], df.get("error"))
    assert list(df.index) == [1, 2] and set(df.status) == {"ok"} and set(df.collective) == {"gloo"}
    assert df.loc[1, "efficiency"] == 1 and df.loc[2, "batch_size"] == 8 and df.loc[2, "per_replica_batch"] == 4
    assert df.loc[2, "efficiency_lo"] <= df.loc[2, "efficiency"] <= df.loc[2, "efficiency_hi"]
    assert len(df.loc[2, "step_times_ms"].split(";")) == 3
    assert df.framework_version.notna().all() and df.device_name.notna().all()  # the replicas' environment
    jobs = read_table(run / "jobs.csv", "jobs").frame()
    assert len(jobs) == 2 and (jobs.timed_s > 0).all() and (jobs.build_s > 0).all()
    html = (tmp_path / "rep" / run.name / "index.html").read_text()
    assert CPU_CAVEAT.split(":")[0] in html and "scaling-resnet20_v1.png" in html
    answer = html.index("resnet20_v1, weak scaling efficiency (1 = ideal) at the most replicas measured: pytorch")
    assert answer < html.index("Environment")  # the answer on the first screen, the method below


def test_strong_scaling_splits_one_global_batch_and_divides_the_efficiency_by_r():
    """--strong: the global batch fixed, split over the replicas; efficiency = t1 / (R tR), 1 ideal; a batch a
    count does not divide is refused with one sentence."""
    from bench.measures.scaling import rows_for
    from bench.pipeline.suites import Options, expand
    jobs = expand("scaling", Options(gpu=False, frameworks=("torch",), strong=True, batch_sizes=(32,)))
    assert [(j.replicas, j.per_replica_batch, j.global_batch) for j in jobs] == [(1, 32, 32), (2, 16, 32)]
    assert jobs[1].job_id.endswith("/x2-strong") and jobs[1].base_row("r")["scaling"] == "strong"
    with pytest.raises(ValueError, match="does not split evenly"):
        expand("scaling", Options(gpu=False, frameworks=("torch",), strong=True, batch_sizes=(15,)))
    one, two = [0.20, 0.21, 0.20, 0.22], [0.12, 0.11, 0.12, 0.13]  # half the batch a replica: 0.12 s, ideal 0.105
    (r1, r2) = rows_for("pytorch", {1: one, 2: two}, {}, 32, "cpu", strong=True)
    assert (r2["per_replica_batch"], r2["batch_size"], r2["scaling"]) == (16, 32, "strong")
    assert r2["efficiency"] == pytest.approx(0.205 / (2 * 0.12))
    assert r2["efficiency_lo"] <= r2["efficiency"] <= r2["efficiency_hi"]
    assert r2["images_per_s"] == pytest.approx(32 / 0.12)


def test_scaling_flags_on_a_plan_without_scaling_jobs_are_named_not_silently_dropped(tmp_path, capsys):
    from bench.run import main
    assert main(["--suite", "smoke", "--strong", "--replicas", "2", "--dry-run", "--device", "cpu",
                 "--out", str(tmp_path)]) == 0
    assert "--replicas and --strong apply to scaling jobs; suite smoke has none" in capsys.readouterr().err
