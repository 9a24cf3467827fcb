"""Keras on TensorFlow's CPU allocator peak (cpu_alloc_peak_mib): TensorFlow's BFC CPU allocator is turned on for
CPU memory jobs alone, and its peak over one compiled training step behaves as a memory figure must.

TF_CPU_ALLOCATOR_USE_BFC must be set before TensorFlow starts, so every measurement runs in its own process."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.core.job import Job
from bench.stacks.keras.tensorflow import BFC_ENV

ROOT = Path(__file__).resolve().parents[1]
ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE",
            "KERAS_BACKEND", BFC_ENV)


def _tf_job(kind: str, device: str = "cpu", **kw) -> Job:
    return Job(kind, "resnet20_v1", "keras", "tensorflow", "fp32", 4, device=device, **kw)


def _run(code: str, timeout: int = 600) -> dict:
    env = {k: v for k, v in os.environ.items() if k != BFC_ENV}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.split("JSON", 1)[1])


def test_bfc_allocator_is_set_for_cpu_memory_jobs_only(monkeypatch):
    from bench.pipeline.worker import configure_env
    for k in ENV_KEYS:
        monkeypatch.setenv(k, os.environ.get(k, ""))  # restored after the test (configure_env sets them)
    monkeypatch.setenv(BFC_ENV, "true")  # even when the parent had it on, a throughput job's timings run without it
    configure_env(_tf_job("throughput"))
    assert BFC_ENV not in os.environ and os.environ["KERAS_BACKEND"] == "tensorflow"
    configure_env(_tf_job("memory"))
    assert os.environ[BFC_ENV] == "true"
    for job in (_tf_job("epochs", recipe="smoke"), _tf_job("memory", "cuda"),
                Job("memory", "resnet20_v1", "torch", None, "fp32", 4, device="cpu")):
        os.environ[BFC_ENV] = "true"
        configure_env(job)
        assert (BFC_ENV in os.environ) == (job.framework == "torch"), job.job_id  # another stack's env is left alone
    info = _tf_job("memory").stack
    assert info.env_for("memory", "cpu") == ({"KERAS_BACKEND": "tensorflow", BFC_ENV: "true"}, ())
    assert info.env_for("throughput", "cpu") == ({"KERAS_BACKEND": "tensorflow"}, (BFC_ENV,))


def test_cpu_memory_sweeps_include_keras_on_tensorflow():
    from bench.pipeline.suites import CPU_MEMORY_SWEEP, DEPTH_SWEEP, Options, expand
    jobs = [j for j in expand("memory", Options(models=("densenet_bc100_k12",), frameworks=("keras",), gpu=False))
            if j.keras_backend == "tensorflow"]
    assert {j.batch_size for j in jobs if j.depth is None} >= set(CPU_MEMORY_SWEEP)
    assert {j.depth for j in jobs if j.depth} == set(DEPTH_SWEEP["densenet_bc100_k12"]) - {100}


@pytest.mark.slow
def test_throughput_job_process_runs_tensorflows_default_allocator():
    """The process of a throughput job, set up by the worker, runs TensorFlow's default CPU allocator (it does not
    count a small tensor), the memory job's the BFC allocator (it does)."""
    code = ("import json, sys\nfrom bench.core.job import Job\nfrom bench.pipeline.worker import configure_env\n"
            "configure_env(Job(sys.argv[1], 'resnet20_v1', 'keras', 'tensorflow', 'fp32', 4, device='cpu'))\n"
            "from bench.stacks.keras.tensorflow import cpu_allocator_is_bfc\nprint('JSON' + json.dumps(cpu_allocator_is_bfc()))")
    env = {**os.environ, BFC_ENV: "true", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}  # the parent's is removed
    out = {}
    for kind in ("throughput", "memory"):
        p = subprocess.run([sys.executable, "-c", code, kind], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        out[kind] = json.loads(p.stdout.split("JSON", 1)[1])
    assert out == {"throughput": False, "memory": True}


@pytest.mark.slow
def test_cpu_peak_grows_by_the_twins_activations_and_memeff_densenet_is_below_naive():
    """From batch 2 to 128 the peak grows by about the activations the PyTorch twin saves for the same growth, and
    the memory-efficient DenseNet's peak is below the naive one's. The sizes are chosen so that the growth is larger
    than the ~32 MiB filter-gradient scratch buffer that is alive once or twice in a step (ResNet-8 at batch 2:
    34.8 or ~59 MiB; a growth from batch 2 to 16 on 16x16 inputs, ~4 MiB, was within it)."""
    code = (
        "import json\nfrom bench.core.job import Job\nfrom bench.pipeline.worker import configure_env\n"
        "configure_env(Job('memory', 'resnet20_v1', 'keras', 'tensorflow', 'fp32', 4, device='cpu'))\n"
        "from bench.stacks import get_stack\nm = get_stack('keras', 'tensorflow').memory()\n"
        "out = {f'resnet b{b}': vars(m.step_memory('resnet20_v1', b, device='cpu', depth=8, input_size=32))\n"
        "       for b in (2, 128)}\n"
        "for n in ('densenet40_k12', 'densenet40_k12_memeff'):\n"
        "    out[n] = vars(m.step_memory(n, 16, device='cpu', depth=28, input_size=32))\n"
        "print('JSON' + json.dumps(out))")
    r = _run(code)
    small, large = r["resnet b2"], r["resnet b128"]
    state = small["params"] + small["grads"] + small["optimizer_state"]
    assert small["cpu_alloc_peak"] > state  # the weights, gradients and momentum are in the allocator's peak
    from bench.stacks import get_stack
    twin = get_stack("torch").memory()
    twin.with_alloc_peak = False
    saved = {b: twin.step_memory("resnet20_v1", b, device="cpu", depth=8, input_size=32).saved_activations
             for b in (2, 128)}
    growth, twin_growth = large["cpu_alloc_peak"] - small["cpu_alloc_peak"], saved[128] - saved[2]
    # measured 1.25-1.51 x the twin's 72.4 MiB in four processes (TF keeps some tensors PyTorch frees, plus the
    # scratch buffer's coin flip at either end: 1.03-1.56 from the extremes of the steps' medians seen)
    assert 0.8 * twin_growth < growth < 2.5 * twin_growth, (growth / 2**20, twin_growth / 2**20)
    for row in (small, large):  # the source names the steps' range around the median and the inter-op threads
        lo, hi = map(float, re.search(r"steps: ([\d.]+)-([\d.]+) MiB", row["cpu_alloc_source"]).groups())
        assert lo - 0.05 <= row["cpu_alloc_peak"] / 2**20 <= hi + 0.05 and "inter-op threads" in row["cpu_alloc_source"]
    naive, memeff = r["densenet40_k12"], r["densenet40_k12_memeff"]
    assert naive["params"] == memeff["params"]  # the same network, kept differently
    # DenseNet at depth 28 (8 layers a block), batch 16, 32x32: memeff/naive 0.63-0.72 in five processes (one
    # inter-op thread: 0.70); at depth 16 the saving (~18%) was within the scratch buffer's flip
    assert memeff["cpu_alloc_peak"] < 0.88 * naive["cpu_alloc_peak"], (memeff["cpu_alloc_peak"], naive["cpu_alloc_peak"])
    assert "BFC" in naive["cpu_alloc_source"] and naive["saved_activations"] is None
    # the allocator peak of a step (above what was held before it): it grows with the batch, the weights and
    # momentum held before are not in it, and the memory-efficient DenseNet's is below the naive one's
    rise = large["alloc_peak"] - small["alloc_peak"]
    assert 0.8 * twin_growth < rise < 2.5 * twin_growth and small["alloc_peak"] < small["cpu_alloc_peak"], rise / 2**20
    assert memeff["alloc_peak"] < naive["alloc_peak"] and naive["alloc_peak_kind"] == "runtime"


def test_memory_job_row_carries_the_cpu_peak(tmp_path):
    """The whole path: the worker's own process (BFC on), the measure, the CSV row."""
    from bench.results.read import read_csv
    job = Job("memory", "resnet20_v1", "keras", "tensorflow", "fp32", 2, steps=1, device="cpu", depth=8)
    subprocess.run([sys.executable, "-m", "bench.pipeline.worker", "--out", str(tmp_path), "--run-id", "t", "--job",
                    json.dumps(job.to_dict())], cwd=ROOT, check=True, timeout=600, capture_output=True,
                   env={k: v for k, v in os.environ.items() if k != BFC_ENV})
    row = read_csv(tmp_path / "memory.csv", "memory").iloc[0]
    assert row.status == "ok" and row.backend == "tensorflow" and row.exec_mode == "nojit"
    assert row.cpu_alloc_peak_mib > row.params_mib + row.grads_mib + row.optimizer_state_mib
    assert "BFC" in row.peak_alloc_source and pd_isna(row.peak_alloc_mib) and pd_isna(row.saved_activations_mib)
    assert "no CPU allocator peak" not in row.null_reason


def pd_isna(v) -> bool:
    import pandas as pd
    return bool(pd.isna(v))


def test_report_includes_the_cpu_peak_labelled_by_its_quantity(tmp_path):
    """Keras on TensorFlow's CPU peak in the memory section: its own figures (batch, depth), the leanest sentence
    naming each quantity compared, the twin ratio over PyTorch's state + saved activations, the memeff pair."""
    from bench.report import render
    from bench.results.schema import append_row
    from bench.results.writes import write_json_atomic
    d = tmp_path / "run"
    d.mkdir()
    write_json_atomic(d / "run_meta.json", {"run_id": "tf", "device": "cpu"})
    torch_state = {"resnet110_v1": 533.0, "densenet_bc100_k12": 2134.0, "densenet_bc100_k12_memeff": 780.0}
    tf_peak = {"resnet110_v1": 548.0, "densenet_bc100_k12": 2215.0, "densenet_bc100_k12_memeff": 923.0}
    for m in torch_state:
        for b, depth in ((32, None), (64, None), (64, 40 if m.startswith("densenet") else 56),
                         (64, 52 if m.startswith("densenet") else 32), (64, 76 if m.startswith("densenet") else 20)):
            common = {"run_id": "tf", "status": "ok", "model": m, "device": "cpu", "batch_size": b, "depth": depth,
                      "measurement": "train", "oom": False, "params_mib": 3.0, "grads_mib": 3.0,
                      "optimizer_state_mib": 3.0, "params_trainable": 800_000, "null_reason": "no GPU"}
            f = b / 64 * (depth or 100) / 100
            append_row(d / "memory.csv", "memory", {
                **common, "job_id": f"m/{m}/torch/b{b}/d{depth}", "framework": "torch", "backend": "torch",
                "exec_mode": "eager", "saved_activations_mib": torch_state[m] * f - 9,
                "state_plus_activations_mib": torch_state[m] * f})
            append_row(d / "memory.csv", "memory", {
                **common, "job_id": f"m/{m}/tf/b{b}/d{depth}", "framework": "keras", "backend": "tensorflow",
                "exec_mode": "nojit", "cpu_alloc_peak_mib": tf_peak[m] * f, "peak_alloc_source": "tf BFC"})
    md = render(d, tmp_path / "rep").with_name("index.md").read_text()
    memory = md.split("## Memory")[1]
    leanest = next(line for line in memory.splitlines() if line.strip())
    assert leanest.startswith("Leanest per model (the lowest allocator peak of a training step")
    # rows with no allocator peak of a step (alloc_peak_mib): unlike quantities are never ranked against each other
    assert "densenet_bc100_k12: not comparable (keras/tensorflow nojit has no allocator peak of a training step" \
           in leanest and "2,134" not in leanest
    assert "keras/tensorflow nojit's CPU allocator peak is 1.038x the state + saved activations of torch eager for " \
           "densenet_bc100_k12 at batch 64" in md
    assert "CPU allocator peak: keras/tensorflow nojit, batch 64:" in md and "keeps 42% (923 vs 2,215 MiB)" in md
    for stem in ("cpu_peak_vs_batch", "cpu_peak_vs_depth", "activations_vs_batch", "memory_vs_depth"):
        assert f"({stem}.png)" in md
    assert "cpu_peak_memory_saved_pct" in md
