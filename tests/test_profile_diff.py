"""The diff that explains a change (bench.report.sections.profile_diff) and the layer-kind slowdown hook
(TWINBENCH_INJECT_LAYER_SLOWDOWN) it is tested against."""
import numpy as np
import pandas as pd
import pytest

from bench.report.sections.profile_diff import diff_sentence, diff_tables, profile_diff_parts
from bench.results.schema import PROFILE_STEP_ROW
from bench.stacks.common.inject import extra_rows, layer_slowdowns

LAYERS = [("conv1", "conv", 4.0), ("bn1", "batchnorm", 1.0), ("relu1", "relu", 0.5), ("conv2", "conv", 4.0),
          ("bn2", "batchnorm", 1.0), ("fc", "linear", 0.3)]


def _rows(seed, slow_kind=None, factor=1.0, coverage=0.95):
    """Profile rows of one implementation: each layer forward and backward (backward 2x forward), 2% noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for layer, kind, ms in LAYERS:
        for phase, f in (("forward", 1.0), ("backward", 2.0)):
            slow = factor if kind == slow_kind else 1.0
            rows.append({"layer": layer, "kind": kind, "phase": phase, "ms_per_step": ms * f * slow * rng.normal(1, 0.02)})
    named = sum(r["ms_per_step"] for r in rows)
    rows.append({"layer": "(unattributed)", "kind": "other", "phase": "other", "ms_per_step": named * (1 / coverage - 1)})
    step = sum(r["ms_per_step"] for r in rows)
    rows.append({"layer": PROFILE_STEP_ROW, "kind": "", "phase": "", "ms_per_step": step, "coverage": coverage,
                 "trace_path": f"traces/t{seed}.json"})
    common = {"status": "ok", "model": "resnet20_v1", "framework": "torch", "backend": "torch", "exec_mode": "eager",
              "precision": "fp32", "batch_size": 32}
    return pd.DataFrame([{**common, **r} for r in rows])


def test_a_slowed_kind_is_named_first_with_its_share_of_the_change():
    d = diff_tables(_rows(1, "batchnorm", 1.5), _rows(0))  # batchnorm 50% slower: +3 ms of a ~30 ms step
    assert d["kinds"].kind.iloc[0] == "batchnorm"
    bn = d["kinds"].iloc[0]
    assert bn.change_ms == pytest.approx(3.0, rel=0.15) and 0.8 < bn.share_of_change < 1.2
    assert bn.share_after > bn.share_before
    assert d["phases"].iloc[0].kind == "batchnorm" and d["phases"].iloc[0].phase == "backward"  # 2 of its 3 ms
    assert set(d["layers"].layer.head(2)) == {"bn1", "bn2"}
    assert 0.8 < d["explained"] < 1.2 and d["coverage"] == (0.95, 0.95)
    s = diff_sentence("torch eager resnet20_v1", d)
    assert "batchnorm changed most" in s and "coverage 95% / 95%" in s
    same = diff_tables(_rows(1, "conv", 1.3), _rows(0))
    assert same["kinds"].kind.iloc[0] == "conv"  # the cause moves, the name follows


def test_compare_parts_link_traces_or_say_how_to_add_a_profile(tmp_path):
    after = {"dir": tmp_path / "a", "profile": _rows(1, "relu", 3.0)}
    before = {"dir": tmp_path / "b", "profile": _rows(0)}
    texts, tables = profile_diff_parts(after, before, tmp_path / "report", models=["resnet20_v1"])
    assert "relu changed most" in texts[1]
    traces = tables[-1][1]
    assert list(traces.side) == ["the other", "this run"] and traces.trace.str.contains(r"\.\./b/traces/t0\.json").iloc[0]
    texts, tables = profile_diff_parts(after, {"dir": tmp_path / "b", "profile": None}, tmp_path, models=["resnet20_v1"])
    assert len(texts) == 1 and not tables and "python -m bench.profile resnet20_v1" in texts[0] and "the other" in texts[0]


def test_the_hook_reads_kinds_fractions_and_frameworks(monkeypatch):
    monkeypatch.setenv("TWINBENCH_INJECT_LAYER_SLOWDOWN", "conv:0.15:torch;batchnorm:0.5")
    assert layer_slowdowns("torch") == {"conv": 0.15, "batchnorm": 0.5}
    assert layer_slowdowns("keras") == {"batchnorm": 0.5}
    assert extra_rows(32, 0.15) == 5 and extra_rows(2, 0.15) == 1 and extra_rows(None, 0.15) is None
    monkeypatch.delenv("TWINBENCH_INJECT_LAYER_SLOWDOWN")
    assert layer_slowdowns("torch") == {}


def _profile_frame(p) -> pd.DataFrame:
    rows = [{"layer": r.layer, "kind": r.kind, "phase": r.phase, "ms_per_step": r.ms_per_step} for r in p.rows]
    rows.append({"layer": PROFILE_STEP_ROW, "kind": "", "phase": "", "ms_per_step": p.profiled_step_ms,
                 "coverage": p.coverage})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_an_injected_layer_kind_slowdown_is_named_first_by_a_real_torch_profile_diff(monkeypatch):
    """Two real profiles of a small ResNet in PyTorch eager, the second with every convolution doing twice its work
    (the hook): the diff names conv first, with a large part of its own time again and a larger share of the step
    (conv is the largest kind already, so size and share are what show the cause), and the twin's output is
    unchanged by the hook."""
    import torch

    from bench.stacks import get_stack
    from bench.stacks.base import ProfileSpec
    from bench.stacks.pytorch.inject import slow_layers
    from bench.zoo import build
    opts = dict(depth=8, input_size=16)
    stack = get_stack("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared cores: one thread, and each side's fastest of two interleaved profiles
    try:
        stack.profile(ProfileSpec("resnet20_v1", 8, device="cpu", steps=2, model_options=opts))  # the process's first: one-time costs
        sides = {"before": [], "after": []}
        for _ in range(2):
            for side, hook in (("before", None), ("after", "conv:1.0:torch")):
                if hook:
                    monkeypatch.setenv("TWINBENCH_INJECT_LAYER_SLOWDOWN", hook)
                else:
                    monkeypatch.delenv("TWINBENCH_INJECT_LAYER_SLOWDOWN", raising=False)
                sides[side].append(stack.profile(ProfileSpec("resnet20_v1", 8, device="cpu", steps=3, model_options=opts)))
    finally:
        torch.set_num_threads(threads)
    before, after = (min(sides[k], key=lambda p: p.profiled_step_ms) for k in ("before", "after"))
    d = diff_tables(_profile_frame(after), _profile_frame(before))
    conv = d["kinds"].iloc[0]
    # named first, and concentrated there: a slowdown of the whole process (another tenant) would also put conv, the
    # largest kind, first, but would leave its share of the step where it was
    assert conv.kind == "conv" and conv.change_ms > 0.3 * conv.ms_before, d["kinds"]
    assert conv.share_after > conv.share_before + 0.04, d["kinds"]
    torch.manual_seed(0)
    net = build("resnet20_v1", "torch", **opts).eval()
    x = torch.randn(4, 3, 16, 16)
    ref = net(x)
    assert torch.allclose(slow_layers(net)(x), ref)  # more work, the same numbers


@pytest.mark.parametrize("kind", ["conv", "add", "batchnorm"])
def test_the_hook_changes_no_number_of_either_twin(monkeypatch, kind):
    """Every layer of the kind does more work (two-input layers too) and each twin's output is the same."""
    import keras
    import torch

    from bench.stacks.keras.inject import slow_layers as slow_keras
    from bench.stacks.pytorch.inject import slow_layers as slow_torch
    from bench.zoo import build
    opts = dict(depth=8, input_size=16)
    monkeypatch.setenv("TWINBENCH_INJECT_LAYER_SLOWDOWN", f"{kind}:0.5")
    torch.manual_seed(0)
    net = build("resnet20_v1", "torch", **opts).eval()
    x = torch.randn(4, 3, 16, 16)
    ref = net(x)
    assert torch.allclose(slow_torch(net)(x), ref, atol=1e-6)
    keras.utils.set_random_seed(0)
    knet = build("resnet20_v1", "keras", **opts)
    kx = np.random.default_rng(0).standard_normal((4, 16, 16, 3)).astype("float32")
    kref = keras.ops.convert_to_numpy(knet(kx, training=False))
    calls = []
    from bench.stacks.keras.layers import keras_kind, layers_of
    for layer in layers_of(knet):
        if keras_kind(layer) == kind:
            inner = layer.call
            layer.call = lambda *a, _inner=inner, **k: (calls.append(1), _inner(*a, **k))[1]
    out = keras.ops.convert_to_numpy(slow_keras(knet)(kx, training=False))
    assert np.allclose(out, kref, atol=1e-5) and len(calls) == 2 * sum(keras_kind(la) == kind for la in layers_of(knet))


_KERAS_CHILD = r"""
import json, os, sys
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from bench.stacks import get_stack
from bench.stacks.base import ProfileSpec
stack, opts, out = get_stack("keras", "tensorflow"), dict(depth=8, input_size=16), {"before": [], "after": []}
stack.profile(ProfileSpec("resnet20_v1", 8, device="cpu", steps=2, model_options=opts))  # one-time costs
for _ in range(2):
    for side, hook in (("before", ""), ("after", "conv:1.0:keras")):
        os.environ["TWINBENCH_INJECT_LAYER_SLOWDOWN"] = hook
        p = stack.profile(ProfileSpec("resnet20_v1", 8, device="cpu", steps=3, model_options=opts))
        out[side].append({"rows": [r.__dict__ for r in p.rows], "step": p.profiled_step_ms, "coverage": p.coverage})
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_an_injected_layer_kind_slowdown_is_named_first_by_a_real_keras_tensorflow_profile_diff():
    """The same with the Keras twin on TensorFlow (graph mode: the hook's extra pass is traced into the step)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(root)}
    r = subprocess.run([sys.executable, "-c", _KERAS_CHILD], env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[7:])

    def frame(p):
        rows = [{k: v for k, v in x.items() if k in ("layer", "kind", "phase", "ms_per_step")} for x in p["rows"]]
        return pd.DataFrame(rows + [{"layer": PROFILE_STEP_ROW, "kind": "", "phase": "", "ms_per_step": p["step"],
                                     "coverage": p["coverage"]}])
    before, after = (min(res[k], key=lambda p: p["step"]) for k in ("before", "after"))
    d = diff_tables(frame(after), frame(before))
    conv = d["kinds"].iloc[0]
    assert conv.kind == "conv" and conv.change_ms > 0.3 * conv.ms_before, d["kinds"]
    assert conv.share_after > conv.share_before + 0.04, d["kinds"]
