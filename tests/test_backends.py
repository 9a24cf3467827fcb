"""Every Keras backend beside PyTorch in one run: --keras-backend lists, each job on its own backend, one report."""
import csv
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

from bench.core.job import Job
from bench.core.stack_registry import KERAS_BACKENDS
from bench.pipeline.suites import Options, expand, installed_keras_backends

ROOT = Path(__file__).resolve().parents[1]


def _impls(jobs):
    return {(j.framework, j.keras_backend) for j in jobs}


def test_keras_backend_all_and_lists_expand_into_jobs(monkeypatch):
    from bench.run import keras_meta, options_from, parse_args
    installed = installed_keras_backends()
    assert installed and set(installed) <= set(KERAS_BACKENDS)
    args = parse_args(["--suite", "throughput", "--keras-backend", "all", "--models", "resnet20_v1"])
    assert args.keras_backends_t == installed
    jobs = expand("throughput", options_from(args, gpu=False))
    assert _impls(jobs) == {("torch", None)} | {("keras", b) for b in installed}
    assert keras_meta(args, jobs)["keras_backends"] == list(installed)  # run_meta records the list
    args = parse_args(["--suite", "throughput", "--keras-backend", "jax,tensorflow,jax", "--models", "resnet20_v1"])
    assert {b for _, b in _impls(expand("throughput", options_from(args, gpu=False)))} == {None, "jax", "tensorflow"}
    # defaults: the GPU suites take every installed backend, smoke and train one
    for suite in ("throughput", "memory", "cifar10-quick", "cifar10-full"):
        assert {b for f, b in _impls(expand(suite, Options(models=("resnet20_v1",)))) if f == "keras"} == set(installed)
    for suite in ("smoke", "train"):
        assert {b for f, b in _impls(expand(suite, Options(models=("resnet20_v1",)))) if f == "keras"} == {"tensorflow"}
    # 'all' looks libraries up without importing them, and leaves out what is not installed
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real(name, *a))
    assert "jax" not in installed_keras_backends()


@pytest.mark.parametrize("value", ["mxnet", "jax,caffe", ","])
def test_unknown_keras_backend_is_an_argparse_error_naming_the_choices(value, capsys):
    from bench.run import parse_args
    with pytest.raises(SystemExit) as e:
        parse_args(["--suite", "throughput", "--keras-backend", value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "unknown --keras-backend" in err and "tensorflow, jax, torch" in err and "all" in err


def test_exec_modes_reach_training_jobs_with_their_own_ids():
    jobs = expand("train", Options(models=("resnet20_v1",), frameworks=("torch",),
                                   exec_modes=("eager", "step-compile"), gpu=False))
    assert {j.exec_mode for j in jobs} == {"eager", "step-compile"}
    assert len({j.job_id for j in jobs}) == 2 and any(j.job_id.endswith("/step-compile") for j in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("backend", installed_keras_backends())
def test_a_keras_job_runs_on_the_backend_it_asks_for(backend, tmp_path):
    """One tiny throughput job per backend through bench.pipeline.worker: the row names that backend and its version."""
    job = Job("throughput", "resnet20_v1", "keras", backend, "fp32", 2, "infer", steps=2, max_warmup=10, device="cpu")
    env = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}  # the job must set it itself
    p = subprocess.run([sys.executable, "-m", "bench.pipeline.worker", "--out", str(tmp_path), "--run-id", "be",
                        "--job", json.dumps(job.to_dict())], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    with open(tmp_path / "throughput.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["status"] == "ok" and row["framework"] == "keras" and row["backend"] == backend
    assert row["backend_version"] == version(backend) and f"/keras-{backend}/" in row["job_id"]
    assert float(row["images_per_s"]) > 0


def test_keras_window_trains_as_train_on_batch_does():
    """The timed Keras window (steps run as fit runs them, one read-back) is the same training as single steps."""
    from bench.stacks import make_step
    tiny = {"depth": 8, "input_size": 8}
    a, b = (make_step("resnet20_v1", "keras", "train", 4, device="cpu", model_options=tiny) for _ in range(2))
    assert a.window is not None and a.steps_per_sample > 1
    for r in (a, b):
        r.step()  # builds and compiles; the window needs a compiled train function
    for _ in range(3):
        a.step()
    b.window(3)
    start = make_step("resnet20_v1", "keras", "train", 4, device="cpu", model_options=tiny).extra["weights"]()
    wa, wb = a.extra["weights"](), b.extra["weights"]()
    assert any(not np.allclose(x, y) for x, y in zip(start, wb))  # the window trained
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


def test_report_compares_every_implementation_with_pytorch_eager(tmp_path):
    """One report: a label per framework/backend/exec mode, ratios to torch eager, the fastest and leanest named."""
    from bench.report import render
    from bench.results.schema import append_row
    from bench.results.writes import write_json_atomic
    d = tmp_path / "results" / "four"
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": "four", "suite": "throughput", "device": "cuda",
                                           "keras_backends": ["tensorflow", "jax", "torch"]})
    speed = {("torch", "torch", "eager"): 100.0, ("torch", "torch", "step-compile"): 300.0,
             ("keras", "tensorflow", "jit"): 150.0, ("keras", "jax", "jit"): 250.0, ("keras", "torch", "nojit"): 50.0}
    for (fw, be, mode), ips in speed.items():
        for model, f in (("resnet20_v1", 1.0), ("densenet40_k12", 0.5)):
            ms = 128 / (ips * f) * 1e3
            common = {"run_id": "four", "status": "ok", "model": model, "framework": fw, "backend": be,
                      "exec_mode": mode, "device": "cuda", "precision": "bf16", "batch_size": 128}
            append_row(d / "throughput.csv", "throughput", {
                **common, "job_id": f"t/{model}/{be}/{mode}", "measurement": "train", "input": "synthetic",
                "first_step_s": 1.0, "step_ms_median": ms, "images_per_s": ips * f,
                "step_times_ms": " ".join(f"{ms * (1 + j / 1000):.4f}" for j in range(-5, 6))})
            append_row(d / "memory.csv", "memory", {
                **common, "job_id": f"m/{model}/{be}/{mode}", "measurement": "train", "oom": False,
                "peak_alloc_mib": 1000.0 / ips * (2 if model == "densenet40_k12" and fw == "torch" else 1)})
    md = (render(d, tmp_path / "reports" / "four").parent / "index.md").read_text()
    throughput = md.split("## Throughput")[1]
    first = next(line for line in throughput.splitlines() if line.strip())
    assert first.startswith("Fastest train step per model") and "resnet20_v1: torch step-compile (300" in first
    assert "3.000x [" in first and "torch eager" in first and "densenet40_k12: torch step-compile (150" in first
    rows = [ln for ln in md.splitlines() if ln.startswith("| resnet20_v1 | train | bf16 | 128 | synthetic |")]
    ratio = {ln.split(" | ")[5]: ln for ln in rows if ln.split(" | ")[5][0].isalpha()}  # implementation -> its row
    assert set(ratio) == {"keras/tensorflow jit", "keras/jax jit", "keras/torch nojit", "torch step-compile"}
    assert "| 2.500 |" in ratio["keras/jax jit"] and "| faster |" in ratio["keras/jax jit"]  # 250/100
    assert "| 0.500 |" in ratio["keras/torch nojit"] and "| slower |" in ratio["keras/torch nojit"]  # 50/100
    assert "| 3.000 |" in ratio["torch step-compile"] and "within process" in ratio["torch step-compile"]
    memory = md.split("## Memory")[1]
    first = next(line for line in memory.splitlines() if line.strip())
    assert first.startswith("Leanest per model") and "resnet20_v1: torch step-compile" in first
    assert "densenet40_k12: keras/jax jit" in first  # torch's peaks are doubled on densenet


def test_training_rows_name_the_mode_they_trained_in():
    from bench.measures.training import resolved_exec_mode
    job = lambda fw, be, mode=None: Job("epochs", "resnet20_v1", fw, be, "fp32", 64, exec_mode=mode, device="cpu")  # noqa: E731
    assert resolved_exec_mode(job("torch", None)) == "eager"
    assert resolved_exec_mode(job("torch", None, "step-compile")) == "step-compile"
    assert resolved_exec_mode(job("keras", "jax")) == "jit" and resolved_exec_mode(job("keras", "tensorflow")) == "nojit"
