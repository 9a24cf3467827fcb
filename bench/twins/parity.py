"""Inference parity: both twins of a model built, weights copied torch -> keras, eval-mode logits compared."""
from __future__ import annotations

import numpy as np

from bench.twins.transfer import _kind, keras_inventory, torch_inventory, torch_layers, torch_to_keras


def parity(name: str, batch: int = 4, seed: int = 0, **options) -> dict:
    """Build both twins of ``name``, copy torch -> keras, compare eval-mode logits on one random batch.

    BN statistics are calibrated first: one train-mode pass with momentum 1 sets them to the compared
    batch's own statistics, so every layer stays normalised (with another batch's statistics a deep
    plain net amplifies float32 rounding to ~1e-3 in either framework alone). BN affine parameters
    are randomised, so the comparison exercises every BN weight at the activations' natural scale.
    Returns a dict with param counts of both sides, inventory equality, the max abs logit difference
    and torch's own float32 error against float64 (``parity_tolerance``).
    """
    import keras
    import torch

    from bench.zoo import build, get_spec
    from bench.zoo.counts import keras_param_counts, torch_param_counts

    spec = get_spec(name, **options)
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    tm, km = build(name, "torch", **options), build(name, "keras", **options)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, spec.input_channels, spec.input_size, spec.input_size)).astype("float32")
    bns = [m for m in torch_layers(tm).values() if _kind(m) == "bn"]
    with torch.no_grad():
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.momentum = 1.0
        tm.train()
        tm(torch.from_numpy(x))
        for m in bns:
            m.momentum = spec.defaults.torch_bn_momentum
    torch_to_keras(tm, km)
    tm.eval()
    with torch.no_grad():
        yt = tm(torch.from_numpy(x)).numpy()
        # float32 rounding of one framework alone: the yardstick for ill-conditioned nets (plain56)
        y64 = tm.double()(torch.from_numpy(x).double()).numpy()
        tm.float()
    yk = np.asarray(keras.ops.convert_to_numpy(km(x.transpose(0, 2, 3, 1), training=False)))
    return {"model": name, "backend": keras.backend.backend(),
            "torch_params": torch_param_counts(tm), "keras_params": keras_param_counts(km),
            "inventory_equal": torch_inventory(tm) == keras_inventory(km),
            "max_abs_diff": float(np.max(np.abs(yt - yk))), "logit_scale": float(np.max(np.abs(yt))),
            "torch_fp32_error": float(np.max(np.abs(yt - y64)))}


def parity_tolerance(result: dict, tol: float = 1e-4) -> float:
    """Allowed twin difference: ``tol``, or twice one framework's own float32 error when that is larger."""
    return max(tol, 2.0 * result["torch_fp32_error"])
