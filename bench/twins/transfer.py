"""What proves two twins are one network: layer inventories and weight transfer by canonical name.

A PyTorch twin names its layers by module path (``stage1.block0.conv1``); the Keras twin by the same
path with ``_`` for ``.`` (``bench.zoo.specs.keras_name``). Weights move between them by those names,
converting layouts: conv OIHW <-> HWIO, dense (out, in) <-> (in, out), BN (gamma, beta, mean, var).
"""
from __future__ import annotations

import re

import numpy as np

from bench.zoo.specs import keras_name


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
