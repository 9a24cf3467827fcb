"""bench.run end to end on the CPU: schema of every CSV, an injected crash and OOM, resume, bad input."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.schema import columns

ROOT = Path(__file__).resolve().parents[1]
INFER = "throughput/resnet20_v1/torch/fp32/b8/infer/default/synthetic"
MEMORY = "memory/resnet20_v1/torch/fp32/b8/train/default"
ARGS = ["--suite", "smoke", "--models", "resnet20_v1", "--frameworks", "torch", "--epochs", "1", "--no-report"]  # one epoch: cheap


def _run(args, out, **env):
    return subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(out)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=900)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory, cifar_dir):
    out = tmp_path_factory.mktemp("results")
    p = _run(ARGS + ["--data-dir", str(cifar_dir)], out, TWINBENCH_INJECT_FAULT=f"crash:{INFER};oom:{MEMORY}")
    assert p.returncode == 1, p.stderr[-3000:]  # a job ended in error (the OOM is a result)
    assert "exit status 1: 1 job(s) ended in error or timeout" in p.stderr
    (run_dir,) = out.iterdir()
    return out, run_dir, p


def test_every_csv_follows_the_schema_and_carries_its_environment(faulty_run):
    _, run_dir, _ = faulty_run
    for kind in ("throughput", "memory", "epochs", "profile"):
        path = run_dir / f"{kind}.csv"
        with open(path, newline="") as f:
            assert next(csv.reader(f)) == columns(kind)
        for row in _rows(path):
            assert row["run_id"] == run_dir.name and row["schema_version"] == "1"
            for col in ("model", "framework", "backend", "device", "precision", "batch_size", "status"):
                assert row[col], (kind, col, row["job_id"])
            keys = {"throughput": ("measurement", "input"), "memory": ("measurement",), "epochs": ("recipe",),
                    "profile": ("measurement", "layer")}
            for col in keys[kind]:  # failed rows too: every row says what it measured
                assert row[col], (kind, col, row["job_id"])
    meta = json.loads((run_dir / "run_meta.json").read_text())
    for key in ("git_commit", "git_dirty", "command", "suite", "python", "versions", "cuda"):
        assert key in meta
    assert meta["suite"] == "smoke" and meta["versions"]["torch"]


def test_ok_rows_hold_real_measurements(faulty_run):
    _, run_dir, _ = faulty_run
    train = [r for r in _rows(run_dir / "throughput.csv") if r["status"] == "ok" and r["input"] == "synthetic"][0]
    times = [float(t) for t in train["step_times_ms"].split()]
    assert len(times) == int(train["timed_steps"]) >= 10
    assert float(train["step_ms_min"]) <= float(train["step_ms_median"]) <= float(train["step_ms_max"])
    assert abs(float(train["images_per_s"]) - 8 / (float(train["step_ms_median"]) / 1e3)) < 1e-3 * float(train["images_per_s"])
    assert int(train["warmup_steps"]) >= 10 and int(train["params_trainable"]) == 272378
    epochs = _rows(run_dir / "epochs.csv")
    assert [r["epoch"] for r in epochs] == ["1"] and 0 <= float(epochs[0]["test_acc"]) <= 1
    prof = _rows(run_dir / "profile.csv")  # smoke's one profile job: layer rows, then its summary row with a kept trace
    step = [r for r in prof if r["layer"] == "(step)"]
    # 0.97 measured idle; a 3-step window over which one ~15 ms stall outside the layers costs 0.1 of it
    assert len(step) == 1 and step[0]["status"] == "ok" and 0.8 <= float(step[0]["coverage"]) <= 1.0
    assert (run_dir / step[0]["trace_path"]).stat().st_size > 0
    assert any(r["layer"] == "stem_conv" and r["phase"] == "backward" for r in prof)


def test_injected_crash_becomes_an_error_row_and_the_suite_goes_on(faulty_run):
    _, run_dir, p = faulty_run
    rows = {r["job_id"]: r for r in _rows(run_dir / "throughput.csv")}
    assert rows[INFER]["status"] == "error" and "exit code 3" in rows[INFER]["error"]
    assert rows[INFER]["images_per_s"] == ""  # no invented figure
    assert sum(r["status"] == "ok" for r in rows.values()) == 2
    assert "not ok" in p.stdout


def test_injected_oom_is_a_recorded_result(faulty_run):
    _, run_dir, _ = faulty_run
    (row,) = [r for r in _rows(run_dir / "memory.csv") if r["job_id"] == MEMORY]
    assert row["status"] == "oom" and row["oom"] == "true" and row["batch_size"] == "8"
    assert row["peak_alloc_mib"] == ""


def test_cpu_memory_rows_are_null_with_a_reason(tmp_path):
    # (the injected OOM replaced the memory job above, so run one real CPU memory job here)
    p = _run(["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4",
              "--no-report"], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = _rows(next(tmp_path.iterdir()) / "memory.csv")
    assert row["status"] == "ok" and row["peak_alloc_mib"] == "" and "no GPU" in row["null_reason"]
    assert float(row["saved_activations_mib"]) > 0 and row["step_ms_median"] == ""  # CPU: one measured step, untimed
    assert float(row["alloc_peak_mib"]) > 0 and row["alloc_peak_kind"] == "runtime"  # the allocator peak of a step: any device


def test_resume_reruns_only_what_did_not_finish(faulty_run, cifar_dir):
    out, run_dir, _ = faulty_run
    before = {k: len(_rows(run_dir / f"{k}.csv")) for k in ("throughput", "memory", "epochs")}
    p = _run(["--resume", run_dir.name, "--no-report"], out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "1 of 6 jobs to run" in p.stderr  # smoke for one model and framework: 6 jobs, the profile job included
    rows = _rows(run_dir / "throughput.csv")
    # one row per job, the last attempt: the crashed attempt's error row moved to throughput.csv.attempts
    assert len(rows) == before["throughput"] and rows[-1]["job_id"] == INFER and rows[-1]["status"] == "ok"
    assert [r["job_id"] for r in rows].count(INFER) == 1
    assert [(r["job_id"], r["status"]) for r in _rows(run_dir / "throughput.csv.attempts")] == [(INFER, "error")]
    assert len(_rows(run_dir / "memory.csv")) == before["memory"]  # the OOM is a result, not retried
    assert len(_rows(run_dir / "epochs.csv")) == before["epochs"]


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly_and_the_run_resumes(tmp_path, signame):
    """Ctrl-C (SIGINT) or SIGTERM: the running job is killed, finished rows are kept, --resume goes on.

    The child starts with SIGINT ignored, as a background job of a non-interactive shell does: the
    runner must still stop on it (``timeout -s INT`` in a script relies on that)."""
    import signal
    import time
    sig = getattr(signal, signame)
    args = ["--suite", "throughput", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4",
            "--no-report", "--out", str(tmp_path)]
    p = subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.time() + 300
    while time.time() < deadline:  # interrupt once the second job's worker is running
        logs = list(tmp_path.glob("*/logs/*.log"))
        if len(logs) >= 2:
            break
        time.sleep(0.2)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-2000:]
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    done = _rows(run_dir / "throughput.csv")
    assert len(done) == 1 and done[0]["status"] == "ok"  # the finished job is kept, the interrupted one left no row
    meta = json.loads((run_dir / "run_meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["status_cause"] == {"SIGINT": "Ctrl-C (SIGINT)"}.get(signame, signame)
    r = _run(["--resume", run_dir.name, "--no-report"], tmp_path)
    assert r.returncode == 0 and "2 of 3 jobs to run" in r.stderr, r.stderr[-2000:]
    assert json.loads((run_dir / "run_meta.json").read_text())["status"] == "finished"


def test_ctrl_c_after_the_last_job_says_the_rows_are_kept(tmp_path, cifar_dir, monkeypatch, capsys):
    """A Ctrl-C (or a script's deadline) that lands in the summary, after every job: exit 130, a sentence on
    what is kept and how to render the report, no traceback; the run stays marked finished."""
    import bench.run as run

    def interrupted(out):
        raise KeyboardInterrupt
    monkeypatch.setattr(run, "_execute", lambda args, plan, session: {"ok": 1})  # the jobs: already done
    monkeypatch.setattr(run, "summary_table", interrupted)
    rc = run.main(["--suite", "throughput", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4",
                   "--no-report", "--data-dir", str(cifar_dir), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    assert rc == 130 and "interrupted while writing the summary" in err and f"bench.report {run_dir}" in err, err
    assert json.loads((run_dir / "run_meta.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("args,message", [
    (["--suite", "smoek"], "unknown suite 'smoek'"),
    (["--suite", "smoke", "--models", "resnet20v1"], "resnet20_v1"),
    (["--suite", "smoke", "--frameworks", "mxnet"], "unknown framework"),
    (["--suite", "smoke", "--batch-sizes", "a,b"], "--batch-sizes must be integers"),
    (["--resume", "no-such-run"], "no run to resume"),
    (["--suite", "smoke", "--exec-mode", "graph"], "unknown --exec-mode"),
    ([], "give --suite"),
])
def test_bad_input_is_a_clear_error(args, message, tmp_path):
    p = _run(args, tmp_path)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_dry_run_and_list(tmp_path):
    # no GPU here: running on cuda is refused clearly, while planning a GPU run is allowed
    p = _run(["--suite", "smoke", "--device", "cuda", "--models", "resnet20_v1"], tmp_path)
    assert p.returncode == 2 and "no NVIDIA GPU" in p.stderr
    p = _run(["--suite", "cifar10-full", "--dry-run", "--device", "cuda", "--models", "resnet20_v1"], tmp_path)
    assert p.returncode == 0 and "plan a GPU run would follow" in p.stderr
    assert "b2048" in p.stdout  # the GPU memory sweep, not the CPU's single batch
    p = _run(["--suite", "cifar10-full", "--dry-run", "--models", "resnet20_v1"], tmp_path)
    assert p.returncode == 0 and "estimated time" in p.stdout and "epochs/resnet20_v1" in p.stdout
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    p = _run(["--suite", "throughput", "--dry-run", "--models", "resnet20_v1", "--exec-mode", "eager,compile,nojit"],
             tmp_path)
    ids = [line.split()[-1] for line in p.stdout.splitlines() if line.strip().startswith("~")]
    assert any("/torch/" in i and "/compile/" in i for i in ids) and any("/torch/" in i and "/eager/" in i for i in ids)
    assert all("/nojit/" in i for i in ids if "/keras-" in i) and not any("/default/" in i for i in ids)
    p = _run(["--list"], tmp_path)
    for suite in ("smoke", "cifar10-quick", "cifar10-full", "throughput", "memory", "train"):
        assert suite in p.stdout


def test_quick_suite_sweeps_only_where_it_tells():
    from bench.pipeline.suites import QUICK_MEMORY_SWEEP, QUICK_TRAIN_MODELS, Options, expand
    jobs = expand("cifar10-quick", Options(gpu=True))
    mem = {}
    for j in jobs:
        if j.kind == "memory":
            mem.setdefault((j.model, j.framework, j.keras_backend), []).append(j.batch_size)
    assert mem[("densenet_bc100_k12_memeff", "keras", "tensorflow")] == list(QUICK_MEMORY_SWEEP)
    assert mem[("resnet110_v1", "torch", None)] == list(QUICK_MEMORY_SWEEP) and mem[("plain20", "torch", None)] == [512]
    trained = {(j.model, j.epochs, j.recipe) for j in jobs if j.kind == "epochs"}
    assert trained == {(m, 15, "fast") for m in QUICK_TRAIN_MODELS}
    assert {j.model for j in jobs if j.kind == "throughput" and j.input == "real"} == set(QUICK_TRAIN_MODELS)


def test_train_suite_is_the_published_recipe_alone():
    from bench.pipeline.suites import Options, expand
    jobs = expand("train", Options(models=("resnet20_v1", "densenet_bc100_k12"), gpu=True))
    assert {j.kind for j in jobs} == {"epochs"}
    assert {(j.model, j.framework, j.batch_size, j.recipe, j.epochs) for j in jobs} == {
        ("resnet20_v1", "torch", 128, "paper", None), ("resnet20_v1", "keras", 128, "paper", None),
        ("densenet_bc100_k12", "torch", 64, "paper", None), ("densenet_bc100_k12", "keras", 64, "paper", None)}
    assert {j.precision for j in expand("train", Options(models=("resnet20_v1",), precisions=("fp32", "bf16")))} == {
        "fp32", "bf16"}


def test_harness_overhead_tool_compares_like_with_like():
    """bench.overhead times the same network both ways; here only that it measures (CPU, tiny)."""
    from bench.overhead import measure
    r = measure("resnet20_v1", batch=2, precision="fp32", steps=5, repeats=1, device="cpu")
    assert r["bare_images_per_s"] > 0 and r["harness_images_per_s"] > 0
    assert r["ratio"] == pytest.approx(r["harness_images_per_s"] / r["bare_images_per_s"])


def test_a_run_measures_the_roofs_once_when_none_are_cached(tmp_path, cifar_dir, monkeypatch, capsys):
    """No roofs cached here: the run measures them (quick, only its jobs' libraries) before its jobs, caches them and
    records them in run_meta.json; the next run reads the cache; --dry-run and --no-roofs measure nothing.
    The measurement is faked (bench.peaks measures in child processes); the jobs are skipped."""
    import bench.peaks as peaks
    import bench.run as run
    from bench.core import roofs
    from bench.core.env import this_machine

    monkeypatch.delenv("TWINBENCH_NO_ROOFS", raising=False)  # conftest's: no run in the tests measures them
    monkeypatch.setenv(roofs.ENV, str(tmp_path / "roofs.json"))
    calls = []

    def fake_measure(device, quick=False, only=None):
        calls.append((device, quick, only))
        return {"device": device, "quick": quick, "bandwidth_gbs": 10.0, "bandwidth_library": "torch",
                "libraries": {lib: {"gemm_gflops": {"fp32": 100.0}, "triad_gbs": 10.0} for lib in only}}
    monkeypatch.setattr(peaks, "measure", fake_measure)
    monkeypatch.setattr(run, "_execute", lambda args, plan, session: {"ok": 1})
    argv = ["--suite", "throughput", "--models", "resnet20_v1", "--keras-backend", "tensorflow", "--batch-sizes", "4",
            "--device", "cpu", "--no-report", "--data-dir", str(cifar_dir)]

    assert run.main(argv + ["--dry-run", "--out", str(tmp_path / "dry")]) == 0
    assert "measures this machine's roofs once (quick: torch, tensorflow" in capsys.readouterr().out
    assert run.main(argv + ["--no-roofs", "--out", str(tmp_path / "none")]) == 0
    assert calls == [] and roofs.cached(this_machine(), "cpu") is None
    (run_dir,) = (tmp_path / "none").iterdir()
    assert "null_reason" in json.loads((run_dir / "run_meta.json").read_text())["roofs"]

    assert run.main(argv + ["--out", str(tmp_path / "first")]) == 0
    assert calls == [("cpu", True, ("torch", "tensorflow"))]
    assert "measuring this machine's roofs once (cached for later runs): torch, tensorflow" in capsys.readouterr().err
    assert roofs.compute_roof(roofs.cached(this_machine(), "cpu"), "tensorflow", "fp32") == 100.0
    (run_dir,) = (tmp_path / "first").iterdir()
    assert roofs.memory_roof(json.loads((run_dir / "run_meta.json").read_text())["roofs"]) == 10.0

    assert run.main(argv + ["--out", str(tmp_path / "second")]) == 0
    assert len(calls) == 1  # cached: measured once
