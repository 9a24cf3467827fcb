"""What proves two twins are one network: layer inventories and weight transfer by canonical name.

A PyTorch twin names its layers by module path (``stage1.block0.conv1``); the Keras twin by the same
path with ``_`` for ``.`` (``bench.specs.keras_name``). Weights move between them by those names,
converting layouts: conv OIHW <-> HWIO, dense (out, in) <-> (in, out), BN (gamma, beta, mean, var).

``python -m bench.twins MODEL [MODEL...] [--backend jax]`` checks parity in a fresh process (so
``KERAS_BACKEND`` can differ from the caller's) and prints one JSON line per model.
``python -m bench.twins --train MODEL...`` checks *training* parity instead (``bench.train_parity``):
k steps of the project's training in both twins, weights and BN statistics compared after each step.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

import numpy as np

from bench.specs import keras_name


def torch_layers(model) -> dict:
    """Ordered {canonical name: module} of every PyTorch module holding weights (conv, BN, dense)."""
    from torch import nn
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    return {n: m for n, m in model.named_modules() if isinstance(m, kinds)}


def _keras_walk(layer):
    for sub in getattr(layer, "_layers", []):
        yield sub
        yield from _keras_walk(sub)


def keras_layers(model) -> dict:
    """Ordered {keras layer name: layer} of every Keras layer owning weights directly (nested included)."""
    from keras import layers
    kinds = (layers.Conv2D, layers.BatchNormalization, layers.Dense)
    return {lyr.name: lyr for lyr in _keras_walk(model) if isinstance(lyr, kinds)}


def _kind(layer) -> str:
    cls = type(layer).__name__
    return {"Conv2d": "conv", "Conv2D": "conv", "BatchNorm2d": "bn", "BatchNormalization": "bn",
            "TwinBatchNormalization": "bn",
            "Linear": "dense", "Dense": "dense"}[cls]


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _canonical_order(items: list[tuple[str, str, tuple]]) -> list[tuple[str, str, tuple]]:
    """Inventories are compared in natural order of canonical names: Keras' functional graph orders
    layers topologically, PyTorch by registration, and neither order is part of the network."""
    return sorted(items, key=lambda it: _natural_key(it[0]))


def torch_inventory(model) -> list[tuple[str, str, tuple]]:
    """[(keras-style name, kind, weight shapes in PyTorch layout)] in canonical order."""
    out = []
    for name, m in torch_layers(model).items():
        shapes = [tuple(p.shape) for p in m.parameters(recurse=False)]
        if _kind(m) == "bn":
            shapes += [tuple(m.running_mean.shape), tuple(m.running_var.shape)]
        out.append((keras_name(name), _kind(m), tuple(shapes)))
    return _canonical_order(out)


def keras_inventory(model) -> list[tuple[str, str, tuple]]:
    """[(name, kind, weight shapes converted to PyTorch layout)] in canonical order."""
    out = []
    for name, lyr in keras_layers(model).items():
        shapes = []
        for w in lyr.weights:
            s = tuple(int(d) for d in w.shape)
            if len(s) == 4:       # HWIO -> OIHW
                s = (s[3], s[2], s[0], s[1])
            elif len(s) == 2:     # (in, out) -> (out, in)
                s = (s[1], s[0])
            shapes.append(s)
        out.append((name, _kind(lyr), tuple(shapes)))
    return _canonical_order(out)


def _to_keras_arrays(m) -> list[np.ndarray]:
    """The layer's arrays in Keras layout, as copies that share no memory with the torch tensors.

    ``Tensor.numpy()`` of a CPU tensor is a view of the tensor's storage, and Keras' JAX backend may
    keep a contiguous numpy array it is given without copying it (XLA's CPU client aliases aligned
    host buffers). A Keras variable set from such a view would then *be* the torch tensor: a later
    in-place torch update (``optimizer.step()``, BN's ``running_mean``) would change the Keras twin too.
    """
    kind = _kind(m)
    if kind == "bn":
        return [np.array(t.detach().cpu().numpy(), order="C") for t in (m.weight, m.bias, m.running_mean, m.running_var)]
    w = m.weight.detach().cpu().numpy()
    w = np.array(w.transpose(2, 3, 1, 0) if kind == "conv" else w.T, order="C")  # np.array copies
    return [w] + ([np.array(m.bias.detach().cpu().numpy(), order="C")] if m.bias is not None else [])


def torch_to_keras(torch_model, keras_model) -> int:
    """Copy every weight of ``torch_model`` into ``keras_model``; returns the number of layers copied."""
    tl, kl = torch_layers(torch_model), keras_layers(keras_model)
    _check_same_names(tl, kl)
    for name, m in tl.items():
        kl[keras_name(name)].set_weights(_to_keras_arrays(m))
    return len(tl)


def keras_to_torch(keras_model, torch_model) -> int:
    """Copy every weight of ``keras_model`` into ``torch_model``; returns the number of layers copied."""
    import torch
    tl, kl = torch_layers(torch_model), keras_layers(keras_model)
    _check_same_names(tl, kl)
    with torch.no_grad():
        for name, m in tl.items():
            ws = [np.asarray(w) for w in kl[keras_name(name)].get_weights()]
            kind = _kind(m)
            if kind == "bn":
                targets = (m.weight, m.bias, m.running_mean, m.running_var)
            else:
                ws[0] = ws[0].transpose(3, 2, 0, 1) if kind == "conv" else ws[0].T
                targets = (m.weight,) + ((m.bias,) if m.bias is not None else ())
            if len(ws) != len(targets):
                raise ValueError(f"{name}: keras has {len(ws)} weights, torch {len(targets)}")
            for t, w in zip(targets, ws):
                t.copy_(torch.from_numpy(np.ascontiguousarray(w)).to(t.dtype))
    return len(tl)


def _check_same_names(tl: dict, kl: dict) -> None:
    tnames = [keras_name(n) for n in tl]
    if sorted(tnames) != sorted(kl):
        only_t = sorted(set(tnames) - set(kl))[:5]
        only_k = sorted(set(kl) - set(tnames))[:5]
        raise ValueError(f"twins differ in layers: only in torch {only_t}, only in keras {only_k}")


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

    from bench.counts import keras_param_counts, torch_param_counts
    from bench.models import build, get_spec

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.twins",
                                 description="Check that the torch and keras twins are one network.")
    ap.add_argument("models", nargs="+", help="registry names or fnmatch patterns")
    ap.add_argument("--backend", default=None, help="Keras backend for this process (default: KERAS_BACKEND)")
    ap.add_argument("--train", action="store_true",
                    help="training-step parity: same weights and batches, --steps steps of --recipe in both twins; "
                         "exit status 1 if a step exceeds its bound")
    ap.add_argument("--steps", type=int, default=3, help="--train: training steps (default 3)")
    ap.add_argument("--batch", type=int, default=16, help="--train: examples per step (default 16)")
    ap.add_argument("--recipe", default="paper", help="--train: recipe whose optimizer and lr schedule are used (default paper)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp64"),
                    help="--train: fp32 (bound: PyTorch's own float32-vs-float64 distance) or fp64 (both twins in float64)")
    args = ap.parse_args(argv)
    if args.backend:
        if "keras" in sys.modules:
            raise SystemExit("--backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    if os.environ.get("KERAS_BACKEND") == "torch":
        import torch  # noqa: F401  (Keras asks for torch to be imported first on the torch backend)
    from bench.models import list_models
    names = [n for p in args.models for n in (list_models(p) or [p])]
    if args.train:
        from bench.recipes import RECIPES
        if args.recipe not in RECIPES or args.steps < 1 or args.batch < 2:
            print(f"error: --train needs a recipe among {', '.join(RECIPES)}, --steps >= 1 and --batch >= 2 "
                  f"(got {args.recipe!r}, {args.steps}, {args.batch})", file=sys.stderr)
            return 2
        from bench.train_parity import train_parity
        ok = True
        for n in names:
            r = train_parity(n, steps=args.steps, batch=args.batch, recipe=args.recipe, precision=args.precision)
            ok = ok and r["ok"]
            print(json.dumps(r), flush=True)
        return 0 if ok else 1
    for n in names:
        print(json.dumps(parity(n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
