"""Memory of a training step on any device (bench.stacks: the memory counters): saved-for-backward bytes, state bytes, breakdown.

Everything here runs on a CPU at batch 2: the saved-activation figure is linear in the batch, so the
shapes of the curves (quadratic / linear in depth) and the ratios hold at any batch.
"""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.results.read import read_csv
from bench.results.schema import KINDS, LAYER_KINDS, append_row, parse_by_kind
from bench.stacks import get_stack
from bench.stacks.base import MIB, StepMemory
from bench.stacks.common.autograd import SavedBytesCounter

ROOT = Path(__file__).resolve().parents[1]


def for_framework(framework, backend=None):
    """The memory counter of a stack (bench.stacks.get_stack(...).memory())."""
    return get_stack(framework, backend).memory()


@pytest.fixture(scope="module")
def torch_mem():
    m = for_framework("torch")
    m.with_alloc_peak = False  # these tests read saved activations and state alone (the profiled steps cost seconds)
    return m


def test_running_peak_counts_from_the_step_start_and_never_below_it():
    from bench.stacks.common.torch_alloc import running_peak
    assert running_peak([100, 50, -120, 200, -230]) == 230  # 100, 150, 30, 230, 0
    assert running_peak([-64, 32]) == 0  # frees of what was held before, then less than that: nothing above the start
    assert running_peak([]) == 0


def test_torch_alloc_peak_matches_the_saved_activation_counter_and_grows_with_batch():
    """PyTorch's allocator peak of a step (the profiler's allocation events) against the saved-activation counter
    (autograd's saved tensors), two independent measures: within 5% for a ResNet and a naive DenseNet (measured 0.985
    to 1.005 on a 2-core CPU: the peak is the saved activations plus the first gradients and transient buffers, minus
    the previous step's gradients, freed by zero_grad). It grows about linearly with the batch, and the
    memory-efficient DenseNet's is below the naive one's."""
    mem = for_framework("torch")
    got = {}
    for name, b, opts in (("resnet20_v1", 4, {}), ("resnet20_v1", 16, {}), ("densenet40_k12", 8, {"depth": 16}),
                          ("densenet40_k12_memeff", 8, {"depth": 16})):
        m = mem.step_memory(name, b, device="cpu", **opts)
        assert m.alloc_peak_kind == "runtime" and "profile_memory" in m.alloc_peak_method
        got[name, b] = m
    for key in (("resnet20_v1", 16), ("densenet40_k12", 8)):
        m = got[key]
        assert abs(m.alloc_peak / m.saved_activations - 1) < 0.05, (key, m.alloc_peak / MIB, m.saved_activations / MIB)
    small, large = got["resnet20_v1", 4].alloc_peak, got["resnet20_v1", 16].alloc_peak
    assert 3.0 < large / small < 4.5, (small / MIB, large / MIB)  # 4x the batch
    assert got["densenet40_k12_memeff", 8].alloc_peak < 0.75 * got["densenet40_k12", 8].alloc_peak
    cols = got["resnet20_v1", 16].columns()
    assert cols["alloc_peak_mib"] == got["resnet20_v1", 16].alloc_peak / MIB and cols["alloc_peak_kind"] == "runtime"


def test_counter_counts_each_storage_once_views_included_and_skips_excluded():
    import torch
    w = torch.randn(64, 64, requires_grad=True)
    a = torch.randn(256, 256, requires_grad=True)
    with SavedBytesCounter({w.untyped_storage().data_ptr()}) as c:
        y = (a * a).sum()           # mul saves a twice: one storage
        z = (a[:8] * a[:8]).sum()   # views of a: still a's storage
        v = (w * w).sum()           # excluded storage (a weight)
    assert c.total == a.untyped_storage().nbytes() == 256 * 256 * 4
    assert sum(c.by_kind().values()) == c.total
    (y + z + v).backward()


def test_for_framework_dispatch_and_cpu_peak_is_null_with_reason(torch_mem):
    assert for_framework("keras", "torch").name == "keras/torch"
    assert for_framework("keras", "jax").name == "keras/jax"
    assert for_framework("keras", "tensorflow").name == "keras/tensorflow"
    with pytest.raises(ValueError, match="keras/mxnet"):
        for_framework("keras", "mxnet")
    import torch
    if not torch.cuda.is_available():
        peak, reason = torch_mem.peak_bytes()
        assert peak is None and "no GPU" in reason


def _saved(mem, model, depth, batch=2):
    return mem.step_memory(model, batch, device="cpu", depth=depth).saved_activations


def _quadratic_share(depths, ys):
    """Share of the quadratic term of a degree-2 fit at the deepest point (0 = linear)."""
    a, b, c = np.polyfit(np.asarray(depths, float), np.asarray(ys, float), 2)
    d = max(depths)
    return a * d * d / (a * d * d + b * d + c)


@pytest.mark.slow
def test_naive_densenet_grows_quadratically_with_block_depth_memeff_linearly(torch_mem):
    depths = (16, 28, 40, 52)  # DenseNet-BC 6n+4: n = 2, 4, 6, 8 layers per block
    naive = [_saved(torch_mem, "densenet_bc100_k12", d) for d in depths]
    eff = [_saved(torch_mem, "densenet_bc100_k12_memeff", d) for d in depths]
    assert _quadratic_share(depths, naive) > 0.3, naive
    assert abs(_quadratic_share(depths, eff)) < 0.02, eff
    # the naive network's quadratic term follows the concatenation it stores (twice: concat and relu output)
    from bench.report import concat_bytes_per_image
    analytic = [2 * concat_bytes_per_image("densenet_bc100_k12", depth=d) for d in depths]
    a_meas, a_model = np.polyfit(depths, naive, 2)[0], np.polyfit(depths, analytic, 2)[0]
    assert 0.6 < a_meas / (2 * a_model) < 1.4, (a_meas, a_model)


def test_resnet_grows_linearly_with_depth(torch_mem):
    depths = (20, 32, 44, 56)
    assert abs(_quadratic_share(depths, [_saved(torch_mem, "resnet110_v1", d) for d in depths])) < 0.02


def test_memeff_keeps_at_most_45pct_of_naive_densenet_bc100(torch_mem):
    naive = torch_mem.step_memory("densenet_bc100_k12", 2, device="cpu")
    eff = torch_mem.step_memory("densenet_bc100_k12_memeff", 2, device="cpu")
    assert eff.saved_activations <= 0.45 * naive.saved_activations
    # same network otherwise: the same state; the concatenations are what the variant stops storing
    assert (eff.params, eff.grads, eff.optimizer_state) == (naive.params, naive.grads, naive.optimizer_state)
    assert eff.grads == eff.optimizer_state == 4 * eff.trainable_count  # fp32 grads and SGD momentum
    kn, ke = naive.saved_by_kind, eff.saved_by_kind
    assert sum(kn.values()) == naive.saved_activations and set(kn) <= set(LAYER_KINDS)
    assert kn["concat"] > 5 * ke.get("concat", 0)
    cols = naive.columns()
    assert cols["state_plus_activations_mib"] * MIB == pytest.approx(
        naive.saved_activations + naive.params + naive.grads + naive.optimizer_state)
    assert parse_by_kind(cols["saved_by_kind_mib"])["concat"] == pytest.approx(kn["concat"] / MIB, abs=0.05)


def test_peak_ratio_is_computed_when_an_allocator_peak_exists():
    # the CUDA path of bench.measures.memory passes the allocator peak here; the GPU figure itself needs a GPU session
    m = StepMemory(saved_activations=60 * MIB, params=10 * MIB, grads=10 * MIB, optimizer_state=20 * MIB)
    assert m.columns(peak=110 * MIB)["peak_over_state_activations"] == pytest.approx(1.1)
    assert m.columns()["peak_over_state_activations"] is None


def _producer(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_every_memory_column_is_in_the_schema_with_a_real_producer():
    produced = set(StepMemory().columns()) | {"depth"}
    schema = {name: producer for name, _, producer in KINDS["memory"]}
    missing = produced - set(schema)
    assert not missing, f"memory columns missing from bench/schema.py: {missing}"
    for name in produced:
        assert callable(_producer(schema[name])) or isinstance(_producer(schema[name]), type), name


def test_memory_job_row_on_cpu(tmp_path, monkeypatch):
    from bench.core.job import Job
    from bench.pipeline.worker import main
    for k in ("CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS", "TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE"):
        monkeypatch.setenv(k, os.environ.get(k, ""))  # restored after the test (configure_env sets them)
    job = Job("memory", "densenet40_k12", "torch", None, "fp32", 2, steps=1, device="cpu", depth=16)
    assert job.job_id.endswith("/d16")
    assert not Job("memory", "densenet40_k12", "torch", None, "fp32", 2).job_id.endswith("d16")
    assert main(["--out", str(tmp_path), "--run-id", "t", "--job", json.dumps(job.to_dict())]) == 0
    row = read_csv(tmp_path / "memory.csv", "memory").iloc[0]
    assert row.status == "ok" and row.depth == 16 and row.saved_activations_mib > 0
    assert row.state_plus_activations_mib > row.saved_activations_mib and "no GPU" in row.null_reason
    assert row.params_trainable > 0


def test_memory_suite_on_cpu_sweeps_batch_and_depth():
    from bench.pipeline.suites import CPU_MEMORY_SWEEP, DEPTH_SWEEP, Options, expand
    jobs = expand("memory", Options(models=("densenet_bc100_k12", "resnet20_v1"), frameworks=("torch",), gpu=False))
    ids = [j.job_id for j in jobs]
    assert len(ids) == len(set(ids))
    assert {j.batch_size for j in jobs if j.depth is None and j.model == "resnet20_v1"} == set(CPU_MEMORY_SWEEP)
    swept = {j.depth or 100 for j in jobs if j.model == "densenet_bc100_k12" and j.batch_size == 32}
    assert swept == set(DEPTH_SWEEP["densenet_bc100_k12"])
    assert not any(j.depth for j in jobs if j.model == "resnet20_v1")  # not a depth-sweep model
    gpu = expand("memory", Options(models=("densenet_bc100_k12",), frameworks=("torch",), gpu=True))
    assert gpu and not any(j.depth for j in gpu)  # a GPU's time goes to the allocator peaks


@pytest.mark.slow
def test_keras_on_torch_goes_through_the_same_hooks():
    """Keras twins on the torch backend (own process: Keras fixes its backend at import)."""
    code = ("import json,torch\nfrom bench.stacks import get_stack\nm=get_stack('keras','torch').memory()\n"
            "out={k: vars(m.step_memory('resnet20_v1', b, device='cpu')) for k, b in (('resnet20_v1', 2), ('resnet20_v1 b8', 8))}\n"
            "m.with_alloc_peak=False  # the DenseNets' allocator peaks: the memory suite's run (docs/measures/memory.md)\n"
            "out.update({n: vars(m.step_memory(n, 2, device='cpu')) for n in ('densenet40_k12','densenet40_k12_memeff')})\n"
            "print('JSON'+json.dumps(out))")
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    k = json.loads(p.stdout.split("JSON", 1)[1])
    t = for_framework("torch")
    t.with_alloc_peak = False
    t = t.step_memory("resnet20_v1", 2, device="cpu")
    assert k["resnet20_v1"]["grads"] == t.grads  # the same network: the same trainable bytes
    assert k["resnet20_v1"]["saved_activations"] > 0 and sum(k["resnet20_v1"]["saved_by_kind"].values()) == \
        k["resnet20_v1"]["saved_activations"]
    assert k["densenet40_k12_memeff"]["saved_activations"] < 0.45 * k["densenet40_k12"]["saved_activations"]
    # the allocator peak of Keras' own train step, by PyTorch's method: it grows with the batch (2 -> 8)
    assert 2.5 < k["resnet20_v1 b8"]["alloc_peak"] / k["resnet20_v1"]["alloc_peak"] < 4.5
    assert k["resnet20_v1"]["alloc_peak_kind"] == "runtime" and "train_on_batch" in k["resnet20_v1"]["alloc_peak_method"]


def test_report_memory_section_headline_and_twin_cause(tmp_path):
    from bench.report import render
    from bench.results.writes import write_json_atomic
    d = tmp_path / "run"
    d.mkdir()
    write_json_atomic(d / "run_meta.json", {"run_id": "mem", "device": "cpu"})
    figs = {  # (model, impl backend): saved MiB at batch 64, by kind
        ("resnet110_v1", "torch"): (500.0, "conv=250;relu=250"), ("resnet110_v1", "keras"): (1000.0, "conv=500;batchnorm=250;relu=250"),
        ("densenet_bc100_k12", "torch"): (2000.0, "concat=800;relu=1000;conv=200"),
        ("densenet_bc100_k12_memeff", "torch"): (800.0, "conv=400;relu=400")}
    params = {"resnet110_v1": 1_700_000, "densenet_bc100_k12": 800_000, "densenet_bc100_k12_memeff": 800_000}
    for (m, fw), (mib, kinds) in figs.items():
        for b in (8, 64):
            append_row(d / "memory.csv", "memory", {
                "run_id": "mem", "job_id": f"m/{m}/{fw}/b{b}", "status": "ok", "model": m, "framework": fw, "backend": "torch",
                "device": "cpu", "batch_size": b, "measurement": "train", "oom": False, "exec_mode": "eager" if fw == "torch" else "nojit",
                "saved_activations_mib": mib * b / 64, "saved_by_kind_mib": kinds if b == 64 else None,
                "params_mib": 4.0, "grads_mib": 4.0, "optimizer_state_mib": 4.0, "params_trainable": params[m],
                "state_plus_activations_mib": mib * b / 64 + 12, "null_reason": "no GPU"})
    md = render(d, tmp_path / "rep").with_name("index.md").read_text()
    assert "densenet_bc100_k12 keeps 4.0x the activations of resnet110_v1 with 0.47x its parameters" in md
    assert "the memory-efficient variant keeps 40%" in md
    assert "keras/torch nojit keeps 2.000x the saved activations of torch eager for resnet110_v1" in md
    assert "batchnorm +250 MiB" in md
    for stem in ("activations_vs_batch", "activations_by_kind"):
        assert f"({stem}.png)" in md


def test_keras_tensorflow_has_state_but_no_activation_figure():
    import keras
    if keras.backend.backend() != "tensorflow":
        pytest.skip("this process runs Keras on another backend")
    m = for_framework("keras", "tensorflow").step_memory("resnet20_v1", 2, device="cpu")
    t = for_framework("torch").step_memory("resnet20_v1", 2, device="cpu")
    assert m.saved_activations is None and m.jax_residuals is None and "keras/tensorflow" in m.reasons[0]
    assert m.grads == t.grads and m.optimizer_state >= t.optimizer_state  # + Keras' iteration counter
    assert m.columns()["saved_activations_mib"] is None
    if os.environ.get("TF_CPU_ALLOCATOR_USE_BFC") != "true":  # this process's TensorFlow: its default CPU allocator
        assert m.cpu_alloc_peak is None and m.columns()["cpu_alloc_peak_mib"] is None
        assert any("TF_CPU_ALLOCATOR_USE_BFC=true" in r for r in m.reasons)


@pytest.mark.slow
def test_keras_jax_reports_residuals_in_their_own_column():
    code = ("import json\nfrom bench.stacks import get_stack\nmem=get_stack('keras','jax').memory()\n"
            "out={b: mem.step_memory('resnet20_v1', b, device='cpu', depth=8).columns() for b in (2, 8)}\n"
            "print('JSON'+json.dumps(out))")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    both = json.loads(p.stdout.split("JSON", 1)[1])
    cols = both["2"]
    # the compiled step's buffers beyond its arguments (compile-time): they grow with the batch (2 -> 8)
    assert cols["alloc_peak_kind"] == "compile-time" and "memory_analysis" in cols["alloc_peak_method"]
    assert 2.5 < both["8"]["alloc_peak_mib"] / cols["alloc_peak_mib"] < 4.5, (cols["alloc_peak_mib"], both["8"]["alloc_peak_mib"])
    assert cols["jax_residuals_mib"] > 0 and cols["saved_activations_mib"] is None
    assert cols["state_plus_activations_mib"] is None and "jax" in cols["activations_source"]
