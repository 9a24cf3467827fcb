"""The twins are one network: equal parameter counts, same inventory, transferable weights, same logits."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.twins.parity import parity, parity_tolerance
from bench.twins.transfer import keras_inventory, keras_to_torch, torch_inventory, torch_to_keras
from bench.zoo import build, get_entry, list_models

ALL = list_models()
TOL = 1e-4  # max abs logit difference, float32, inference mode


@pytest.mark.parametrize("name", ALL)
def test_parity_tensorflow_backend(name):
    r = parity(name)
    assert r["backend"] == "tensorflow"
    assert r["torch_params"] == r["keras_params"]
    assert r["inventory_equal"]
    assert r["max_abs_diff"] <= parity_tolerance(r, TOL), r
    if name != "plain56":  # only the deep plain net is ill-conditioned in float32
        assert r["max_abs_diff"] <= parity_tolerance(r, TOL), r
    assert r["logit_scale"] > 0.1  # the comparison is not between two near-zero outputs


@pytest.mark.parametrize("name", ["resnet20_v1", "resnet56_v2", "plain20"])
def test_every_resnet_layer_has_its_twin_name(name):
    """Activations, adds and pooling included (not only parametrised layers): every leaf module of the PyTorch
    ResNet is a Keras layer of the same name, so profiles and memory counts join layer by layer."""
    from bench.zoo.specs import keras_name
    torch_leaves = {keras_name(n) for n, m in build(name, "torch").named_modules() if n and not list(m.children())}
    # a strided Keras conv's explicit ZeroPadding2D is the PyTorch conv's own padding
    keras_layers = {la.name for la in build(name, "keras").layers if type(la).__name__ not in ("InputLayer", "ZeroPadding2D")}
    assert {n for n in torch_leaves if n.endswith(("_relu", "_out", "_add", "_pool"))}  # not only the parametrised
    assert torch_leaves == keras_layers, (sorted(torch_leaves - keras_layers)[:5], sorted(keras_layers - torch_leaves)[:5])


@pytest.mark.parametrize("name", [n for n in ALL if get_entry(n).paper_params])
def test_trainable_params_match_paper(name):
    from bench.zoo.counts import torch_param_counts
    """Within 3% of the paper, or within the paper's printed precision ("0.8M" covers 0.769M)."""
    entry = get_entry(name)
    trainable, _ = torch_param_counts(build(name, "torch"))
    allowed = max(0.03 * entry.paper_params_value, entry.paper_params_rounding)
    assert abs(trainable - entry.paper_params_value) <= allowed


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_parity_other_backends(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} not installed")
    # one of each block type; JAX on CPU compiles op by op, so the deep nets stay on TensorFlow
    names = ["resnet20_v1", "densenet40_k12_memeff"]
    env = {**os.environ, "KERAS_BACKEND": backend}
    out = subprocess.run([sys.executable, "-m", "bench.twins", *names], env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["model"] for r in rows] == names
    for r in rows:  # the command proves a built-in as it proves a user's twin (bench.twins.proof)
        assert r["backend"] == backend and r["source"] == "bench.zoo" and r["ok"], r
        assert r["torch_params"] == r["keras_params"] and r["pairs"] == len(r["layers"])
        assert r["max_abs_diff"] <= r["bound"] <= 10 * TOL, r


def test_transfer_back_keras_to_torch():
    import keras
    import torch
    keras.utils.set_random_seed(1)
    km = build("densenet40_k12", "keras")
    tm = build("densenet40_k12", "torch")
    keras_to_torch(km, tm)
    tm.eval()
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype("float32")
    yk = keras.ops.convert_to_numpy(km(x, training=False))
    with torch.no_grad():
        yt = tm(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(yk - yt).max() <= TOL


def test_parity_detects_a_changed_weight():
    """The comparison can fail: one perturbed kernel makes the logits differ."""
    import keras
    import torch
    tm, km = build("resnet20_v1", "torch"), build("resnet20_v1", "keras")
    torch_to_keras(tm, km)
    layer = km.get_layer("stage2_block0_conv1")
    w = layer.get_weights()
    w[0] = w[0] * 1.5
    layer.set_weights(w)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32")
    tm.eval()
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
    yk = keras.ops.convert_to_numpy(km(x.transpose(0, 2, 3, 1), training=False))
    assert np.abs(yt - yk).max() > TOL


def test_inventory_detects_a_missing_layer():
    tm = build("resnet20_v1", "torch")
    km = build("resnet20_v1", "keras", shortcut="conv3x3")
    assert torch_inventory(tm) != keras_inventory(km)
    with pytest.raises(ValueError):
        torch_to_keras(build("resnet20_v1", "torch"), build("plain20", "keras"))


def test_flops_match_published_counts():
    """FLOPs per image agree with docs/anchors.md (FLOPs per image) (torch FlopCounter): within 1%."""
    from bench.zoo.counts import flops_per_image
    published = {"resnet20_v1": 81.6, "resnet56_v1": 251.5, "densenet_bc100_k12": 576}
    for name, mflops in published.items():
        fwd, train = flops_per_image(build(name, "torch"))
        assert abs(fwd / 1e6 / mflops - 1) < 0.01
        assert 2.5 < train / fwd < 3.5  # backward costs about twice the forward
