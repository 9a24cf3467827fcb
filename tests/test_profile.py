"""The step profiles (``Stack.profile``), the profile measure, its rows in the schema and the report section.

Small twins (depth 8 ResNet, depth 10 DenseNet, 16x16 input, batch 2, 2 steps): what is checked is where
time is attributed, never how long anything takes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.stacks.base import UNATTRIBUTED, ProfileSpec

ROOT = Path(__file__).resolve().parents[1]
SMALL_RESNET = dict(depth=8, input_size=16)
SMALL_DENSENET = dict(depth=10, input_size=16)
SLOW_TORCH = "stage1.block0.conv2"
SLOW_KERAS = "stage1_block0_conv2"
# a sleep, not extra work: on a shared 2-core CPU a contended conv backward can take 100+ ms


def _named(rows):
    return [r for r in rows if r.layer != UNATTRIBUTED]


def _slow_torch_build(monkeypatch, seconds=0.25):
    """``bench.zoo.build`` whose torch twin sleeps in one convolution's forward (an expensive layer)."""
    import bench.zoo
    real = bench.zoo.build

    def build(name, framework, **options):
        net = real(name, framework, **options)
        if framework == "torch":
            conv = net.get_submodule(SLOW_TORCH)
            fwd = conv.forward

            def slow(x):
                time.sleep(seconds)
                return fwd(x)
            conv.forward = slow
        return net
    monkeypatch.setattr(bench.zoo, "build", build)


def test_torch_expensive_layer_is_on_top_and_rows_sum_to_the_step(monkeypatch, tmp_path):
    from bench.stacks import get_stack
    _slow_torch_build(monkeypatch)
    p = get_stack("torch").profile(ProfileSpec("resnet20_v1", 2, device="cpu", steps=2, trace_dir=str(tmp_path),
                                   model_options=SMALL_RESNET))
    top = max(_named(p.rows), key=lambda r: r.ms_per_step)
    assert (top.layer, top.kind, top.phase) == ("stage1_block0_conv2", "conv", "forward")
    total = sum(r.ms_per_step for r in p.rows)
    assert abs(total - p.profiled_step_ms) <= 0.1 * p.profiled_step_ms
    assert 0.9 <= p.coverage <= 1.0
    assert p.trace_path and Path(p.trace_path).stat().st_size > 0


def test_torch_every_conv_has_backward_time_and_twin_names():
    from bench.stacks import get_stack
    from bench.zoo import build
    from bench.zoo.specs import keras_name
    p = get_stack("torch").profile(ProfileSpec("resnet20_v1", 2, device="cpu", steps=2, model_options=SMALL_RESNET))
    convs = {keras_name(n) for n, m in build("resnet20_v1", "torch", **SMALL_RESNET).named_modules()
             if type(m).__name__ == "Conv2d"}
    backward = {r.layer for r in p.rows if r.kind == "conv" and r.phase == "backward" and r.ms_per_step > 0}
    forward = {r.layer for r in p.rows if r.kind == "conv" and r.phase == "forward"}
    assert convs and convs == backward == forward
    assert {"(optimizer)", "(loss)"} <= {r.layer for r in p.rows}
    net = build("resnet20_v1", "torch", **SMALL_RESNET)
    containers = {keras_name(n) for n, m in net.named_modules() if n and list(m.children())}
    # ReLU, add and pooling are named as the Keras layers, not by block: a block's own rows are its Python time alone
    assert {r.kind for r in p.rows if r.layer in containers} <= {"other"}
    assert {"stage1_block0_bn1_relu", "stage1_block0_add", "stage1_block0_out", "head_pool"} <= {r.layer for r in p.rows}
    assert {r.phase for r in p.rows} <= {"forward", "backward", "optimizer", "other"}  # no recompute without checkpoints


def test_torch_memory_efficient_densenet_has_recompute_rows():
    from bench.stacks import get_stack
    naive = get_stack("torch").profile(ProfileSpec("densenet40_k12", 2, device="cpu", steps=2, model_options=SMALL_DENSENET))
    memeff = get_stack("torch").profile(ProfileSpec("densenet40_k12_memeff", 2, device="cpu", steps=2, model_options=SMALL_DENSENET))
    rec = [r for r in memeff.rows if r.phase == "recompute"]
    assert not [r for r in naive.rows if r.phase == "recompute"]
    assert {"concat", "batchnorm", "conv"} <= {r.kind for r in rec}
    assert all(r.layer.startswith("block") for r in rec) and sum(r.ms_per_step for r in rec) > 0


def test_torch_compiled_modes_say_why_they_are_not_attributed():
    from bench.stacks import get_stack
    p = get_stack("torch").profile(ProfileSpec("resnet20_v1", 2, device="cpu", exec_mode="compile", model_options=SMALL_RESNET))
    assert p.coverage is None and not p.rows and "eager" in p.null_reason


@pytest.mark.slow
def test_keras_tensorflow_expensive_layer_on_top():
    """Keras on TensorFlow, in a fresh process (TensorFlow's inter-op threads can be set to 1 only before it
    starts, so that op times do not overlap): a layer that computes its convolution 37 times tops the profile,
    gradient ops are attributed as backward, and the rows sum to the profiled step."""
    out = _child("tensorflow", "resnet20_v1", SLOW_KERAS, SMALL_RESNET)
    named = [r for r in out["rows"] if r["layer"] != UNATTRIBUTED]
    top = max(named, key=lambda r: r["ms_per_step"])
    assert top["layer"] == SLOW_KERAS, out["reason"]
    assert {r["layer"] for r in named if r["kind"] == "conv" and r["phase"] == "backward" and r["ms_per_step"] > 0} >= {
        SLOW_KERAS, "stem_conv"}
    assert abs(sum(r["ms_per_step"] for r in out["rows"]) - out["step"]) <= 0.1 * out["step"], out["reason"]


def test_keras_tensorflow_gradient_sums_go_to_the_layer_whose_backward_consumes_them():
    """A root-level ``AddN`` (a tensor's gradients from two consumers, summed) is attributed through the function's
    graph to the one layer whose backward takes the sum; a sum taken by two layers, or by none known, is not."""
    from types import SimpleNamespace as N

    from bench.stacks.keras.tf_trace import grad_sum_layers
    kinds = {"block0_out": "relu", "block1_conv1": "conv", "pool": None}
    node = lambda name, op, *inputs: N(name=name, op=op, input=list(inputs))  # noqa: E731
    fdef = N(node_def=[
        node("gradient_tape/net_1/block1_conv1_1/Conv2DBackpropInput", "Conv2DBackpropInput"),
        node("gradient_tape/net_1/block1_add_1/Identity", "Identity"),
        node("AddN_3", "AddN", "gradient_tape/net_1/block1_conv1_1/Conv2DBackpropInput:output:0",
             "gradient_tape/net_1/block1_add_1/Identity:output:0"),
        node("gradient_tape/net_1/block0_out_1/ReluGrad", "ReluGrad", "AddN_3:sum:0", "^some_control"),
        node("AddN_4", "AddN", "x:0", "y:0"),  # a sum of a sum: followed to the layer
        node("AddN_5", "AddN", "AddN_4:sum:0", "z:0"),
        node("gradient_tape/net_1/pool_1/AvgPoolGrad", "AvgPoolGrad", "AddN_5:sum:0"),
        node("AddN_6", "AddN", "x:0", "y:0"),  # two layers take it: no single owner
        node("gradient_tape/net_1/block1_conv1_1/Conv2DBackpropFilter", "Conv2DBackpropFilter", "AddN_6:sum:0"),
        node("gradient_tape/net_1/block0_out_1/ReluGrad_1", "ReluGrad", "AddN_6:sum:0"),
        node("AddN_7", "AddN", "x:0", "y:0"),  # taken by the optimizer: not a layer
        node("sgd/mul", "Mul", "AddN_7:sum:0"),
    ])
    found = grad_sum_layers([fdef], kinds)
    assert found == {"AddN_3": ("block0_out", "relu"), "AddN_4": ("pool", "add"), "AddN_5": ("pool", "add")}


_CHILD = r"""
import json, sys, time
import bench.zoo
from bench.stacks import get_stack
from bench.stacks.base import ProfileSpec
backend, model, slow = sys.argv[1], sys.argv[2], sys.argv[3]
real = bench.zoo.build
def build(name, framework, **options):
    net = real(name, framework, **options)
    if slow != "-":
        layer = net.get_layer(slow)
        call = layer.call
        def slowed(x, *a, **k):
            time.sleep(0.25)
            return call(x, *a, **k)
        def more_work(x, *a, **k):  # graph mode traces the call once: a sleep would not run at each step
            return sum((call(x + 1e-3 * i, *a, **k) for i in range(36)), call(x, *a, **k))  # >10x the next layer
        layer.call = more_work if backend in ("tensorflow", "jax") else slowed  # traced once: more work, not a sleep
    return net
bench.zoo.build = build
opts = json.loads(sys.argv[4])
p = get_stack("keras", backend).profile(ProfileSpec(model, 2, device="cpu", steps=2, model_options=opts))
print("RESULT " + json.dumps({"rows": [r.__dict__ for r in p.rows], "step": p.profiled_step_ms, "coverage": p.coverage,
                              "fused": p.fused_share, "reason": p.null_reason}))
"""


def _child(backend: str, model: str, slow: str, options: dict) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": str(ROOT)}
    pre = "import torch\n" if backend == "torch" else ""
    r = subprocess.run([sys.executable, "-c", pre + _CHILD, backend, model, slow, json.dumps(options)], env=env,
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.mark.slow
def test_keras_torch_expensive_layer_on_top_and_recompute():
    """Keras on torch shares the torch-autograd profiler: Keras layer names, a slowed layer on top, backward
    rows per convolution; the memory-efficient DenseNet's keras.remat shows as recompute."""
    out = _child("torch", "resnet20_v1", SLOW_KERAS, SMALL_RESNET)
    named = [r for r in out["rows"] if r["layer"] != UNATTRIBUTED]
    top = max(named, key=lambda r: r["ms_per_step"])
    assert (top["layer"], top["phase"]) == (SLOW_KERAS, "forward")
    assert {r["layer"] for r in named if r["kind"] == "conv" and r["phase"] == "backward"} >= {SLOW_KERAS, "stem_conv"}
    assert abs(sum(r["ms_per_step"] for r in out["rows"]) - out["step"]) <= 0.1 * out["step"]
    memeff = _child("torch", "densenet40_k12_memeff", "-", SMALL_DENSENET)
    assert any(r["phase"] == "recompute" for r in memeff["rows"])


def test_keras_layer_call_opens_the_layers_range_and_is_restored():
    """Keras on torch: a layer's range opens at Keras' ``Layer.__call__`` (Keras' own per-call work is the layer's,
    not unattributed), for every layer call, nested ones included; the class is restored after profiling."""
    import keras
    import numpy as np

    from bench.stacks.keras.torch import keras_call_ranges

    class Recorder:
        def __init__(self):
            self.events = []

        def enter_layer(self, layer, args):
            self.events.append(("enter", layer.name))

        def exit_layer(self, layer, args, output):
            self.events.append(("exit", layer.name))

    dense = keras.layers.Dense(2, name="fc")
    x = np.ones((1, 3), "float32")
    original = keras.layers.Layer.__call__
    rec = Recorder()
    with keras_call_ranges(rec):
        dense(x)
    assert rec.events == [("enter", "fc"), ("exit", "fc")]
    assert keras.layers.Layer.__call__ is original
    dense(x)
    assert len(rec.events) == 2  # no range outside profiling


@pytest.mark.slow
def test_keras_jax_states_coverage_and_fusion():
    """Keras on JAX: XLA ops attributed by their HLO metadata; coverage and the fused share are stated; a layer that
    computes its convolution 37 times tops the attributed layers."""
    slowed = _child("jax", "resnet20_v1", SLOW_KERAS, SMALL_RESNET)
    named = [r for r in slowed["rows"] if not r["layer"].startswith("(")]
    top = max(named, key=lambda r: r["ms_per_step"])
    assert top["layer"] == SLOW_KERAS, sorted(named, key=lambda r: -r["ms_per_step"])[:3]
    out = _child("jax", "resnet20_v1", "-", SMALL_RESNET)
    assert 0 < out["coverage"] <= 1 and out["fused"] is not None
    layers = {r["layer"] for r in out["rows"]}
    assert "stem_conv" in layers and UNATTRIBUTED in layers
    assert any(r["phase"] == "backward" and r["kind"] == "conv" for r in out["rows"])


def _profile_rows(run_id="r1"):
    """Profile rows of two implementations of resnet20_v1, as the measure writes them."""
    base = dict(run_id=run_id, model="resnet20_v1", precision="fp32", batch_size=8, measurement="train", status="ok",
                device="cpu", exec_mode=None)
    impls = {("torch", "torch", "eager"): {"conv": 10.0, "batchnorm": 4.0, "relu": 1.0},
             ("keras", "tensorflow", "nojit"): {"conv": 6.0, "batchnorm": 1.0, "relu": 1.0}}
    rows = []
    for (fw, be, mode), kinds in impls.items():
        job = f"profile/resnet20_v1/{fw}-{be}/fp32/b8/train/{mode}/n3"
        step = sum(kinds.values()) * 2 + 1.0
        for k, ms in kinds.items():
            for phase in ("forward", "backward"):
                rows.append({**base, "job_id": job, "framework": fw, "backend": be, "exec_mode": mode,
                             "layer": f"stage1_block0_{k}1", "kind": k, "phase": phase, "ms_per_step": ms, "calls": 1,
                             "share_of_step": ms / step})
        rows.append({**base, "job_id": job, "framework": fw, "backend": be, "exec_mode": mode, "layer": UNATTRIBUTED,
                     "kind": "other", "phase": "other", "ms_per_step": 1.0, "calls": 0, "share_of_step": 1 / step})
        rows.append({**base, "job_id": job, "framework": fw, "backend": be, "exec_mode": mode, "layer": "(step)",
                     "ms_per_step": step, "share_of_step": 1.0, "profiled_step_ms": step, "unprofiled_step_ms": step / 1.5,
                     "profiler_overhead": 1.5, "coverage": 1 - 1 / step, "trace_path": f"traces/{fw}-{be}.json.gz"})
    return rows


def test_profile_rows_round_trip_the_schema_and_the_report_renders_the_section(tmp_path):
    from bench.report import render
    from bench.results.read import read_csv
    from bench.results.schema import FILES, append_row, columns
    run = tmp_path / "results" / "r1"
    run.mkdir(parents=True)
    (run / "run_meta.json").write_text(json.dumps({"run_id": "r1", "gpu": False}))
    rows = _profile_rows()
    for r in rows:
        append_row(run / FILES["profile"], "profile", r)
        if r.get("trace_path"):  # the traces the rows name (a gone one is listed without a link: tests/test_damage.py)
            (run / r["trace_path"]).parent.mkdir(exist_ok=True)
            (run / r["trace_path"]).write_bytes(b"")
    df = read_csv(run / FILES["profile"], "profile")
    assert list(df.columns) == columns("profile") and len(df) == len(rows)
    assert df[df.layer == "(step)"].coverage.notna().all()
    with pytest.raises(KeyError):
        append_row(run / FILES["profile"], "profile", {"not_a_column": 1})
    (run / "traces").mkdir(exist_ok=True)
    for r in rows:
        if r.get("trace_path"):
            (run / r["trace_path"]).write_bytes(b"trace")
    index = render(run, tmp_path / "reports" / "r1")
    md = (index.parent / "index.md").read_text()
    assert "## Where the time goes" in md
    # torch eager (31 ms) vs keras/tensorflow (17 ms): conv backward differs by 4 ms of the 14 ms gap (the largest
    # attributed difference, not "most": 29%), the figure the scoreboard's why cell gives too
    assert "torch eager is the slowest" in md and "the largest attributed difference is conv backward: 4.0 ms, of the 14.0" in md
    assert "[conv backward](" in md.split("## Scoreboard")[1].split("\n## ")[0] and ": 4.0 ms, of the 14.0 ms gap (29%)" in md
    assert "largest per-layer differences, keras/tensorflow nojit vs torch eager" in md
    # the trace is copied into the report folder and linked there: a copied or zipped report keeps it
    assert "[torch-torch.json.gz](traces/torch-torch.json.gz)" in md
    assert (index.parent / "traces" / "torch-torch.json.gz").is_file()
    assert (index.parent / "profile_split.png").exists()


def test_profile_jobs_in_the_suites_and_the_cli_plan(capsys):
    from bench.pipeline.suites import Options, expand
    smoke = [j for j in expand("smoke", Options(gpu=False)) if j.kind == "profile"]
    timed = {(j.model, j.framework) for j in expand("smoke", Options(gpu=False)) if j.kind == "throughput"}
    # smoke profiles both twins of every model it times (its scoreboard's "why" answers for each), cheaply
    assert {(j.model, j.framework) for j in smoke} == timed and len(timed) == 4
    assert {(j.batch_size, j.steps) for j in smoke} == {(8, 2)}
    quick = [j for j in expand("cifar10-quick", Options(models=("resnet20_v1", "densenet40_k12"), gpu=False,
                                                        keras_backends=("tensorflow", "jax"))) if j.kind == "profile"]
    assert {(j.model, j.framework, j.keras_backend) for j in quick} == {
        (m, fw, be) for m in ("resnet20_v1", "densenet40_k12") for fw, be in
        (("torch", None), ("keras", "tensorflow"), ("keras", "jax"))} and len(quick) == 6
    from bench.profile import main
    assert main(["resnet20_v1", "--frameworks", "torch", "--device", "cpu", "--steps", "4", "--batch-size", "2",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "profile/resnet20_v1/torch/fp32/b2/train/default/n4" in out and "1 jobs" in out


def test_densenet_depth_jobs_and_table():
    import pandas as pd

    from bench.pipeline.suites import Options, expand
    from bench.report.sections.profile import densenet_table
    jobs = [j for j in expand("profile", Options(models=("densenet40_k12", "densenet40_k12_memeff"), frameworks=("torch",),
                                                 gpu=False))]
    assert {(j.model, j.depth) for j in jobs} == {
        (m, d) for m in ("densenet40_k12", "densenet40_k12_memeff") for d in (None, 16, 28)} and len(jobs) == 6
    assert not [j for j in expand("profile", Options(models=("densenet40_k12",), gpu=False)) if j.depth]  # no pair, no sweep
    base = dict(impl="torch eager", batch_size=8, depth=16, precision="fp32", coverage=0.99)
    steps = pd.DataFrame([{**base, "model": "densenet40_k12", "profiled_step_ms": 10.0},
                          {**base, "model": "densenet40_k12_memeff", "profiled_step_ms": 12.5}])
    layers = pd.DataFrame([{**base, "model": "densenet40_k12", "layer": "block1_layer0", "kind": "concat", "phase": p,
                            "ms_per_step": 1.0} for p in ("forward", "backward")]
                          + [{**base, "model": "densenet40_k12_memeff", "layer": "block1_layer0", "kind": k, "phase": p,
                              "ms_per_step": 1.0} for k, p in (("concat", "forward"), ("concat", "recompute"),
                                                                ("batchnorm", "recompute"))])
    t = densenet_table(steps, layers).set_index("model")
    assert t.loc["densenet40_k12", "concat_share"] == 0.2 and t.loc["densenet40_k12", "recompute_share"] == 0
    assert t.loc["densenet40_k12_memeff", "recompute_ms"] == 2.0 and t.loc["densenet40_k12_memeff", "step_over_naive"] == 1.25
    assert pd.isna(t.loc["densenet40_k12", "step_over_naive"])


def test_gap_sentence_names_unattributed_time_and_the_leading_layer_kind():
    """The gap sentence names the largest attributed difference (kind and phase) with its share of the gap, says
    "most of" only above half, and adds the unattributed time, with both coverages, where it is larger."""
    import pandas as pd

    from bench.report.sections.profile import gap_sentences, gap_why
    key = {"model": "resnet20_v1", "precision": "fp32", "batch_size": 32}
    steps = pd.DataFrame([{**key, "impl": "torch eager", "profiled_step_ms": 10.0, "coverage": 0.95},
                          {**key, "impl": "keras/jax jit", "profiled_step_ms": 20.0, "coverage": 0.6}])
    rows = [("torch eager", "conv1", "Conv2D", 8.0), ("torch eager", UNATTRIBUTED, "", 0.5),
            ("keras/jax jit", "conv1", "Conv2D", 10.0), ("keras/jax jit", UNATTRIBUTED, "", 8.0)]
    layers = pd.DataFrame([{**key, "impl": i, "layer": n, "kind": k, "phase": "forward", "ms_per_step": ms}
                           for i, n, k, ms in rows])
    (s,) = gap_sentences(steps, layers)
    assert "Conv2D forward: 2.0 ms, of the 10.0 ms gap (20%)" in s and "most" not in s, s
    assert "7.5 ms (75%) not attributed to a layer (coverage 60% vs 95%)" in s
    layers.loc[layers.layer == UNATTRIBUTED, "ms_per_step"] = 0.0
    layers.loc[(layers.impl == "keras/jax jit") & (layers.layer == "conv1"), "ms_per_step"] = 16.0  # 8 of the 10 ms
    (s,) = gap_sentences(steps, layers)
    assert "Conv2D forward: 8.0 ms, most of the 10.0 ms gap (80%)" in s and "not attributed" not in s, s
    assert gap_why(steps, layers, "resnet20_v1").share == 0.8
