"""Weight pairing of two twins that share no names: which PyTorch module holds the weights of which Keras layer.

Strategies, tried in order; the first that pairs every tensor wins:

1. ``map``: the twins file's explicit ``weight_map`` {torch module name: keras layer name} (the pairs it names are
   always kept; the layers it leaves out go to the next strategies);
2. ``names``: the names after normalising the usual spellings (lower case, ``.``/``/``/``-`` -> ``_``, a leading
   ``model_``/``net_``/``module_`` dropped): the zoo's twins pair this way;
3. ``order``: execution order, per kind: PyTorch forward hooks record the order the modules run in, the Keras layers
   record the order they are called in (one eager inference pass each); the n-th conv of one side pairs with the
   n-th conv of the other, the same for depthwise/grouped convs, dense layers and BatchNorms.

Every parameter and buffer on each side is used exactly once (BatchNorm's ``num_batches_tracked`` counter, which
holds no weight, is the one buffer left out). Layouts are converted, nothing else: conv OIHW <-> HWIO, depthwise
(C*m, 1, kh, kw) <-> (kh, kw, C, m), dense (out, in) <-> (in, out); a shape that differs after that is not paired.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# PyTorch / Keras class names -> pairing kind
TORCH_KINDS = {"Conv2d": "conv", "Linear": "dense", "BatchNorm2d": "bn", "SyncBatchNorm": "bn"}
KERAS_KINDS = {"Conv2D": "conv", "DepthwiseConv2D": "dwconv", "Dense": "dense", "BatchNormalization": "bn",
               "TwinBatchNormalization": "bn"}
# each kind's tensors, by role: (torch attribute, keras weight name)
ROLES = {"conv": (("weight", "kernel"), ("bias", "bias")), "dwconv": (("weight", "kernel"), ("bias", "bias")),
         "dense": (("weight", "kernel"), ("bias", "bias")),
         "bn": (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                ("running_var", "moving_variance"))}
KERAS_WEIGHT_NAMES = {"depthwise_kernel": "kernel"}


class PairingError(Exception):
    """No strategy pairs every tensor, or a layer kind cannot be paired; the message lists what is left."""


class KindError(PairingError):
    """A layer holds weights in a kind the pairing cannot handle (bad input: named)."""


@dataclass
class Pair:
    """One torch module and the keras layer holding the same weights."""

    torch_name: str
    keras_name: str
    kind: str
    module: object
    layer: object

    def label(self) -> str:
        return f"{self.torch_name} <-> {self.keras_name}"


def torch_kind(m) -> str | None:
    kind = TORCH_KINDS.get(type(m).__name__)
    if kind == "conv" and getattr(m, "groups", 1) > 1:
        return "dwconv"
    return kind


def keras_kind(lyr) -> str | None:
    return KERAS_KINDS.get(type(lyr).__name__) or next(
        (k for c, k in KERAS_KINDS.items() if any(b.__name__ == c for b in type(lyr).__mro__)), None)


def _torch_own(m) -> list[tuple[str, tuple]]:
    own = [(n, tuple(p.shape)) for n, p in m.named_parameters(recurse=False)]
    return own + [(n, tuple(b.shape)) for n, b in m.named_buffers(recurse=False) if n != "num_batches_tracked"]


def torch_units(model) -> dict:
    """{module name: module} of every module holding a parameter or buffer itself; an unpairable kind raises."""
    units = {n: m for n, m in model.named_modules() if _torch_own(m)}
    bad = [f"{n} ({type(m).__name__})" for n, m in units.items() if torch_kind(m) is None]
    if bad:
        raise KindError(f"the torch twin has weights in layer kinds the pairing cannot handle: {', '.join(bad)} "
                           "(pairable: Conv2d, grouped Conv2d, Linear, BatchNorm2d)")
    return units


def _keras_walk(layer):
    for sub in getattr(layer, "_layers", []):
        yield sub
        yield from _keras_walk(sub)


def keras_units(model) -> dict:
    """{layer name: layer} of every Keras layer owning weights directly (nested layers walked)."""
    units = {}
    for lyr in _keras_walk(model):
        if lyr.weights and not getattr(lyr, "_layers", []):
            units[lyr.name] = lyr
    bad = [f"{n} ({type(lyr).__name__})" for n, lyr in units.items() if keras_kind(lyr) is None]
    if bad:
        raise KindError(f"the keras twin has weights in layer kinds the pairing cannot handle: {', '.join(bad)} "
                           "(pairable: Conv2D, DepthwiseConv2D, Dense, BatchNormalization)")
    return units


def keras_tensors(lyr) -> dict[str, object]:
    """{role name (kernel, bias, gamma...): variable} of a Keras layer."""
    out = {}
    for w in lyr.weights:
        name = w.path.rsplit("/", 1)[-1] if hasattr(w, "path") else w.name
        out[KERAS_WEIGHT_NAMES.get(name, name)] = w
    return out


def to_torch_layout(kind: str, role: str, shape: tuple) -> tuple:
    """A Keras weight's shape in PyTorch layout."""
    if role != "kernel":
        return shape
    if kind == "conv":
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "dwconv":
        return (shape[2] * shape[3], 1, shape[0], shape[1])
    return (shape[1], shape[0])


def torch_to_keras_array(kind: str, role: str, a: np.ndarray, keras_shape: tuple) -> np.ndarray:
    if role != "kernel":
        return a
    if kind == "conv":
        return a.transpose(2, 3, 1, 0)
    if kind == "dwconv":
        kh, kw, c, mult = keras_shape
        return a.reshape(c, mult, kh, kw).transpose(2, 3, 0, 1)
    return a.T


def keras_to_torch_array(kind: str, role: str, a: np.ndarray) -> np.ndarray:
    if role != "kernel":
        return a
    if kind == "conv":
        return a.transpose(3, 2, 0, 1)
    if kind == "dwconv":
        kh, kw, c, mult = a.shape
        return a.transpose(2, 3, 0, 1).reshape(c * mult, 1, kh, kw)
    return a.T


def _fits(m, lyr) -> bool:
    """Same kind, same shapes (after the layout conversion) of the tensors both hold; a tensor one side alone holds
    (a bias) does not stop the pair, it is left unpaired (``_roles_match``, ``_unpaired``)."""
    kind = torch_kind(m)
    if kind != keras_kind(lyr):
        return False
    own, kt = dict(_torch_own(m)), keras_tensors(lyr)
    roles = [(t, k) for t, k in ROLES[kind] if t in own and k in kt]
    return bool(roles) and all(own[t] == to_torch_layout(kind, k, tuple(int(d) for d in kt[k].shape))
                               for t, k in roles)


def normalise(name: str) -> str:
    n = re.sub(r"[./\-]", "_", name.lower())
    return re.sub(r"^(model|net|module)_", "", n)


def torch_call_order(model, input_shape: tuple) -> list[str]:
    """Module names of ``model`` in the order its forward pass calls them (forward hooks, one eval pass)."""
    import torch
    names = {id(m): n for n, m in model.named_modules()}
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: order.append(names[id(mod)]))
             for m in model.modules()]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1,) + tuple(input_shape), dtype=next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return list(dict.fromkeys(order))


def keras_call_order(model, x: np.ndarray, record: dict | None = None) -> list[str]:
    """Layer names of ``model`` in the order an eager inference pass on ``x`` calls them (each leaf layer's ``call``
    wrapped for the pass). With ``record`` (a dict), each layer's first output is kept there by name."""
    order: list[str] = []
    layers = [lyr for lyr in _keras_walk(model) if not getattr(lyr, "_layers", [])]
    for lyr in layers:
        def wrapped(*a, __lyr=lyr, __call=lyr.call, **kw):
            out = __call(*a, **kw)
            order.append(__lyr.name)
            if record is not None:
                record.setdefault(__lyr.name, out)
            return out
        lyr.call = wrapped
    try:
        model(x, training=False)
    finally:
        for lyr in layers:
            del lyr.call
    return list(dict.fromkeys(order))


def _by_names(tu: dict, ku: dict) -> list[tuple[str, str]]:
    kn = {normalise(n): n for n in ku}
    return [(t, kn[normalise(t)]) for t in tu if normalise(t) in kn and _fits(tu[t], ku[kn[normalise(t)]])]


def _by_order(t_order: list[str], k_order: list[str], tu: dict, ku: dict) -> list[tuple[str, str]]:
    """Per kind, the n-th of each side; a pair whose shapes differ ends that kind's pairing (no skipping ahead)."""
    out = []
    for kind in ("conv", "dwconv", "dense", "bn"):
        ts = [n for n in t_order if n in tu and torch_kind(tu[n]) == kind]
        ks = [n for n in k_order if n in ku and keras_kind(ku[n]) == kind]
        for t, k in zip(ts, ks):
            if not _fits(tu[t], ku[k]):
                break
            out.append((t, k))
    return out


def _unpaired(tu: dict, ku: dict, pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Tensors of each side no pair uses: 'name (shape)' (keras shapes as Keras holds them)."""
    used_t = {t for t, _ in pairs}
    used_k = {k for _, k in pairs}
    ut = [f"{n}.{p} {s}" for n, m in tu.items() if n not in used_t for p, s in _torch_own(m)]
    uk = [f"{n}/{r} {tuple(int(d) for d in w.shape)}" for n, lyr in ku.items() if n not in used_k
          for r, w in keras_tensors(lyr).items()]
    for t, k in pairs:  # a pair whose roles differ (a bias on one side only): those tensors are unpaired too
        own, kt = dict(_torch_own(tu[t])), keras_tensors(ku[k])
        for tr, kr in ROLES[torch_kind(tu[t])]:
            if tr in own and kr not in kt:
                ut.append(f"{t}.{tr} {own[tr]}")
            if kr in kt and tr not in own:
                uk.append(f"{k}/{kr} {tuple(int(d) for d in kt[kr].shape)}")
    return ut, uk


def _roles_match(tu: dict, ku: dict, pairs) -> bool:
    for t, k in pairs:
        own, kt = dict(_torch_own(tu[t])), keras_tensors(ku[k])
        if any((tr in own) != (kr in kt) for tr, kr in ROLES[torch_kind(tu[t])]):
            return False
    return True


def _explicit(weight_map: dict, tu: dict, ku: dict) -> list[tuple[str, str]]:
    pairs = []
    for t, k in weight_map.items():
        if t not in tu or k not in ku:
            side, name = ("torch", t) if t not in tu else ("keras", k)
            raise PairingError(f"weight_map names {side} layer {name!r}, which holds no weights in the {side} twin "
                               f"(its layers: {', '.join(list(tu if side == 'torch' else ku)[:8])}...)")
        if not _fits(tu[t], ku[k]):
            raise PairingError(f"weight_map pairs {t} with {k}, whose kinds or shapes differ")
        pairs.append((t, k))
    return pairs


def pair_twins(torch_model, keras_model, input_size: int, input_channels: int,
               weight_map: dict | None = None) -> tuple[list[Pair], str]:
    """Pair every weight-holding layer of the two twins; returns the pairs (torch execution order) and the strategy.

    Raises:
        PairingError: a layer kind that cannot be paired, or tensors left unpaired by every strategy (listed).
    """
    tu, ku = torch_units(torch_model), keras_units(keras_model)
    fixed = _explicit(weight_map or {}, tu, ku)
    rest_t = {n: m for n, m in tu.items() if n not in {t for t, _ in fixed}}
    rest_k = {n: lyr for n, lyr in ku.items() if n not in {k for _, k in fixed}}
    t_order = torch_call_order(torch_model, (input_channels, input_size, input_size))
    strategies = [("names", lambda: _by_names(rest_t, rest_k))]
    order_cache: dict = {}

    def by_order():
        x = np.zeros((1, input_size, input_size, input_channels), dtype=keras_model.dtype or "float32")
        order_cache["k"] = keras_call_order(keras_model, x)
        return _by_order(t_order, order_cache["k"], rest_t, rest_k)
    strategies.append(("execution order", by_order))
    pairs: list[tuple[str, str]] = []
    for label, strategy in strategies:
        pairs = fixed + strategy()
        if len(pairs) == len(tu) == len(ku) and _roles_match(tu, ku, pairs):
            name = ("explicit map" + (f" + {label}" if rest_t else "")) if fixed else label
            rank = {n: i for i, n in enumerate(t_order)}
            pairs.sort(key=lambda p: rank.get(p[0], len(rank)))
            return [Pair(t, k, torch_kind(tu[t]), tu[t], ku[k]) for t, k in pairs], name
    ut, uk = _unpaired(tu, ku, pairs)
    raise PairingError("the twins' weights do not pair (tried: " + ("explicit map, " if fixed else "")
                       + "names, execution order); unpaired in torch: " + (", ".join(ut) or "none")
                       + "; unpaired in keras: " + (", ".join(uk) or "none"))


def transfer(pairs: list[Pair], direction: str = "torch->keras") -> int:
    """Copy the paired weights (``torch->keras`` or ``keras->torch``), layouts converted; returns tensors copied.

    Arrays are copies: a Keras variable never shares memory with a torch tensor (see ``bench.twins.transfer``)."""
    import torch
    n = 0
    for p in pairs:
        own, kt = dict(p.module.named_parameters(recurse=False)), keras_tensors(p.layer)
        own.update(dict(p.module.named_buffers(recurse=False)))
        for tr, kr in ROLES[p.kind]:
            if tr not in own:
                continue
            t, kv = own[tr], kt[kr]
            if direction == "torch->keras":
                a = torch_to_keras_array(p.kind, kr, t.detach().cpu().double().numpy(), tuple(kv.shape))
                kv.assign(np.array(a, order="C").astype(kv.dtype))
            else:
                import keras
                a = keras_to_torch_array(p.kind, kr, np.asarray(keras.ops.convert_to_numpy(kv)))
                with torch.no_grad():
                    t.copy_(torch.from_numpy(np.ascontiguousarray(a)).to(t.dtype))
            n += 1
    return n
