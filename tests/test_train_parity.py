"""The twins train alike: one BN convention, the same optimizer semantics, k-step parity for every family.

Small members of each registered family (depth overridden, as ``bench.zoo.build`` allows) keep the
checks cheap; the registered depths run with ``python -m bench.twins --train``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.twins.train_parity import FLOOR_BN, FLOOR_WEIGHTS, train_parity

ROOT = Path(__file__).resolve().parents[1]

# one small member of every registered family: resnet v1, resnet v2, plain, densenet, densenet-bc, memeff
FAMILIES = [("resnet20_v1", dict(depth=8)), ("resnet56_v2", dict(depth=11)), ("plain20", dict(depth=8)),
            ("densenet40_k12", dict(depth=10)), ("densenet_bc100_k12", dict(depth=16)),
            ("densenet40_k12_memeff", dict(depth=10)), ("densenet_bc100_k12_memeff", dict(depth=16))]
IDS = [n for n, _ in FAMILIES]


def test_families_cover_the_registry():
    """Every registered model belongs to one of the families checked here."""
    from bench.zoo import get_spec, list_models

    def family(name):
        s = get_spec(name)
        if s.family == "resnet":
            return ("plain" if not s.shortcuts else f"v{s.version}", False)
        return ("bc" if s.bottleneck else "dense", s.memory_efficient)

    assert {family(n) for n in list_models()} <= {family(n) for n, _ in FAMILIES}


@pytest.mark.slow
@pytest.mark.parametrize("name,options", FAMILIES, ids=IDS)
def test_train_parity_fp32(name, options):
    """float32, batch 16, 3 steps of the paper recipe: BN statistics agree within 1e-5 after one step, and
    every step stays within 4x PyTorch's own float32-vs-float64 distance (or the floors).

    Inputs are 8x8 so that few ReLU inputs sit within float32 rounding of zero (see bench.twins.train_parity)."""
    r = train_parity(name, steps=3, batch=16, recipe="paper", input_size=8, **options)
    first = r["per_step"][0]
    assert first["bn_stats_diff"] <= FLOOR_BN, first
    assert first["bn_stats_diff"] > 0 or first["weights_diff"] > 0  # something was compared
    assert r["ok"], r["per_step"]


@pytest.mark.parametrize("name,options", FAMILIES, ids=IDS)
def test_train_parity_fp64_one_cycle(name, options):
    """float64, 3 steps of the smoke recipe (one-cycle lr moving every step, Nesterov, weight decay): the
    twins' training semantics agree to 1e-7 (the float32 lr of Keras' schedule is the only difference)."""
    r = train_parity(name, steps=3, batch=8, recipe="smoke", precision="fp64", input_size=8, **options)
    assert r["ok"], r["per_step"]
    assert len({s["lr"] for s in r["per_step"]}) == 3  # the lr moved at every step


_JAX_PARITY = """
import json, numpy as np, torch
from bench.zoo import build
from bench.twins.train_parity import _keras_arrays, train_parity
from bench.twins.transfer import torch_to_keras
opts = dict(depth=8, input_size=8)
t, k = build("resnet20_v1", "torch", **opts), build("resnet20_v1", "keras", **opts)
torch_to_keras(t, k)
before = _keras_arrays(k)
with torch.no_grad():  # what torch's optimizer.step() and BN's running stats do: in place
    for p in list(t.parameters()) + [b for b in t.buffers() if b.is_floating_point()]:
        p.add_(1.0)
moved = sorted(n for n, arrs in _keras_arrays(k).items() if any((a != b).any() for a, b in zip(arrs, before[n])))
r = train_parity("resnet20_v1", steps=2, batch=8, recipe="paper", **opts)
print("JSON" + json.dumps({"keras_moved_with_torch": moved, "parity": r}))
"""


@pytest.mark.slow
def test_train_parity_on_jax():
    """On Keras' JAX backend: the Keras twin shares no memory with the PyTorch twin it was copied from,
    and 2 steps of the paper recipe agree (before the fix, torch's in-place step moved the aliased Keras
    biases and BN statistics too: 3.8e-2 apart after one step)."""
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-c", _JAX_PARITY], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.split("JSON", 1)[1])
    assert out["keras_moved_with_torch"] == []
    r = out["parity"]
    assert r["backend"] == "jax"
    assert r["per_step"][0]["weights_diff"] <= FLOOR_WEIGHTS and r["per_step"][0]["bn_stats_diff"] <= FLOOR_BN, r["per_step"]
    assert r["ok"], r["per_step"]


def test_parity_detects_the_biased_bn_update(monkeypatch):
    """With Keras' stock BatchNormalization (biased moving variance) the check fails: it can fail."""
    from keras import layers

    from models_tf.common import TwinBatchNormalization
    monkeypatch.setattr(TwinBatchNormalization, "call", layers.BatchNormalization.call)
    r = train_parity("resnet20_v1", steps=1, batch=8, precision="fp64", input_size=8, depth=8)
    assert not r["ok"] and r["per_step"][0]["bn_stats_where"].endswith("moving_variance")


def test_parity_detects_keras_momentum_convention(monkeypatch):
    """Keras' own SGD (lr folded into the velocity) differs from PyTorch's once the lr moves: caught."""
    import keras

    from bench.stacks.keras.optimizers import CoupledSGD
    monkeypatch.setattr(CoupledSGD, "update_step", keras.optimizers.SGD.update_step)
    r = train_parity("resnet20_v1", steps=2, batch=8, recipe="smoke", precision="fp64", input_size=8, depth=8)
    assert r["per_step"][0]["ok"] and not r["per_step"][1]["ok"]


def test_keras_bn_update_is_unbiased_under_mixed_precision():
    """TwinBatchNormalization folds n/(n-1) x the batch variance, float32 statistics, under mixed_bfloat16."""
    import keras

    from models_tf.common import TwinBatchNormalization
    x = np.random.default_rng(0).standard_normal((4, 3, 3, 2)).astype("float32") * 2 + 1
    policy = keras.config.dtype_policy()
    try:
        for name in ("float32", "mixed_bfloat16"):
            keras.config.set_dtype_policy(name)
            bn = TwinBatchNormalization(momentum=0.0, epsilon=1e-5)
            y = bn(x, training=True)
            xr = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.cast(x, bn.compute_dtype), "float32")))
            var = np.asarray(keras.ops.convert_to_numpy(bn.moving_variance))
            assert bn.moving_variance.dtype == "float32"
            np.testing.assert_allclose(var, xr.reshape(-1, 2).var(axis=0, ddof=1), rtol=1e-5)
            out = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")))
            np.testing.assert_allclose(out.reshape(-1, 2).std(axis=0), 1.0, rtol=2e-2)  # normalised with the biased one
    finally:
        keras.config.set_dtype_policy(policy)


def test_cli_refuses_bad_training_options(capsys):
    from bench.twins.__main__ import main
    assert main(["resnet20_v1", "--train", "--recipe", "nope"]) == 2
    assert "--train needs a recipe among" in capsys.readouterr().err
