"""The proof that two implementations are one network, and the diagnosis when they are not.

:func:`prove` builds both sides of a twin (any provider: the zoo or a twins file), pairs their weights
(``bench.twins.pairing``), lints each pair's hyperparameters (:func:`lint`), copies the weights torch -> keras and
runs one inference pass on each side, recording every paired layer's output in the same pass (torch forward hooks,
the Keras layers' calls). Logits and activations are compared in float64 where both stacks compute in it (Keras on
TensorFlow), else in float32 with the built-in twins' bound (``bench.twins.parity.parity_tolerance``). A failed
proof names the first layer pair whose output differs (both names, the difference against the bound) and the lint's
likely cause.

The lint reads (torch side, keras side):

- BatchNorm ``eps`` against ``epsilon``; ``momentum`` against ``1 - momentum`` (Keras weighs the old statistic by
  m, PyTorch the new batch by m);
- convolution padding: Keras ``'same'`` at stride 2 pads bottom/right only on an even input, PyTorch's ``padding=1``
  every side (the outputs have the same shape and different values); kernel size, stride, dilation, groups;
- a bias on one side only;
- an activation fused into a Keras Conv2D/Dense (``activation='relu'``): compared after it, noted;
- the flatten order before the first dense layer: Keras' ``Flatten`` of NHWC puts channels fastest, ``torch.flatten``
  of NCHW slowest, so one dense kernel cannot serve both unless one side permutes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FP64_BOUND = 1e-7    # float64 twins: a relative bound (x max(1, |output|)): float64 leaves rounding ~1e-13
FP32_TOL = 1e-4      # float32: bench.twins.parity.parity_tolerance's floor (twice torch's own fp32 error if larger)


@dataclass
class Finding:
    """One hyperparameter that differs between a pair (``cause``), or a note that does not make them differ."""

    pair: str
    cause: str
    note: bool = False


class ProofError(Exception):
    """The twins cannot be proven (pairing failed, or a side could not run); the message is sentences."""


def _pad_pairs(m) -> tuple:
    p = m.padding
    if isinstance(p, str):
        return p
    return tuple(int(v) for v in p)


def _lint_conv(label: str, m, lyr) -> list[Finding]:
    out = []
    k_stride = tuple(int(s) for s in lyr.strides)
    t_stride = tuple(int(s) for s in m.stride)
    if tuple(m.kernel_size) != tuple(int(k) for k in lyr.kernel_size):
        out.append(Finding(label, f"kernel size {tuple(m.kernel_size)} in torch, {tuple(lyr.kernel_size)} in keras"))
    if t_stride != k_stride:
        out.append(Finding(label, f"stride {t_stride} in torch, {k_stride} in keras"))
    if tuple(m.dilation) != tuple(int(d) for d in lyr.dilation_rate):
        out.append(Finding(label, f"dilation {tuple(m.dilation)} in torch, {tuple(lyr.dilation_rate)} in keras"))
    pad = _pad_pairs(m)
    if lyr.padding == "same" and max(k_stride) > 1 and pad != "same" and any(p > 0 for p in pad):
        out.append(Finding(label, f"padding: keras 'same' at stride {k_stride[0]} pads bottom/right only (an even "
                                  f"input), torch padding={pad[0] if len(set(pad)) == 1 else pad} pads every side; "
                                  "use keras ZeroPadding2D + padding='valid' (or pad torch asymmetrically)"))
    elif lyr.padding == "same" and max(k_stride) == 1 and pad != "same" and \
            any(2 * p != d * (k - 1) for p, k, d in zip(pad, m.kernel_size, m.dilation)):
        out.append(Finding(label, f"padding: keras 'same' (pads {(m.kernel_size[0] - 1) // 2}) against torch "
                                  f"padding={pad}"))
    elif lyr.padding == "valid" and pad != "same" and any(p > 0 for p in pad):
        out.append(Finding(label, f"padding: keras 'valid' against torch padding={pad}: keras pads only with a "
                                  "ZeroPadding2D before the layer", note=True))
    return out


def _bias_and_activation(label: str, m, lyr) -> list[Finding]:
    out = []
    t_bias, k_bias = getattr(m, "bias", None) is not None, bool(getattr(lyr, "use_bias", False))
    if t_bias != k_bias:
        out.append(Finding(label, f"bias: torch {'has' if t_bias else 'has none'}, keras use_bias={k_bias}"))
    act = getattr(getattr(lyr, "activation", None), "__name__", "linear")
    if act not in ("linear", None):
        out.append(Finding(label, f"activation: keras applies {act} inside the layer (torch's module has none; "
                                  "its output is compared after the same activation)", note=True))
    return out


def _lint_bn(label: str, m, lyr) -> list[Finding]:
    out = []
    if abs(float(m.eps) - float(lyr.epsilon)) > 1e-12:
        out.append(Finding(label, f"BatchNorm epsilon: {m.eps:g} in torch, {lyr.epsilon:g} in keras "
                                  "(their defaults: torch 1e-5, keras 1e-3)"))
    if m.momentum is None or abs(float(m.momentum) - (1.0 - float(lyr.momentum))) > 1e-9:
        out.append(Finding(label, f"BatchNorm momentum: torch {m.momentum} against keras {lyr.momentum:g}; torch m = "
                                  f"1 - keras m, so torch {1 - float(lyr.momentum):g} matches keras {lyr.momentum:g}"))
    if bool(m.affine) != (bool(lyr.center) and bool(lyr.scale)):
        out.append(Finding(label, f"BatchNorm affine={m.affine} in torch, center={lyr.center} scale={lyr.scale} in keras"))
    return out


def _flatten_finding(label: str, lyr) -> Finding | None:
    """Keras dense layer fed by a Flatten of a map with more than one pixel: NHWC order (functional models)."""
    try:
        node = lyr._inbound_nodes[0]
        parent = node.parent_nodes[0].operation
    except (AttributeError, IndexError):
        return None
    if type(parent).__name__ not in ("Flatten", "Reshape"):
        return None
    shape = parent.input.shape if hasattr(parent, "input") else None
    if shape is None or len(shape) != 4 or (shape[1] or 1) * (shape[2] or 1) <= 1:
        return None
    return Finding(label, f"flatten order: keras {type(parent).__name__} of a {shape[1]}x{shape[2]}x{shape[3]} NHWC "
                          "map puts channels fastest, torch.flatten of NCHW slowest: the dense kernel pairs rows in "
                          "another order (permute torch's map to NHWC before flattening, or use global pooling)")


def lint(pairs) -> list[Finding]:
    """Every hyperparameter the two sides of each pair state differently (``bench.twins.pairing.Pair`` list)."""
    out: list[Finding] = []
    for p in pairs:
        label = p.label()
        if p.kind in ("conv", "dwconv"):
            out += _lint_conv(label, p.module, p.layer) + _bias_and_activation(label, p.module, p.layer)
        elif p.kind == "dense":
            out += _bias_and_activation(label, p.module, p.layer)
            f = _flatten_finding(label, p.layer)
            if f:
                out.append(f)
        elif p.kind == "bn":
            out += _lint_bn(label, p.module, p.layer)
    return out


def _to_nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def _calibrate(tm, x, torch_dtype) -> None:
    """BN affine randomised and statistics set to the batch's own (as ``bench.twins.parity.parity`` does)."""
    import torch
    from torch import nn
    bns = [m for m in tm.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    with torch.no_grad():
        for m in bns:
            if m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            m.momentum = 1.0
        tm.train()
        tm(torch.from_numpy(x).to(torch_dtype))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    tm.eval()


def _fp64_here() -> bool:
    import keras
    return keras.backend.backend() == "tensorflow"


def _cause_for(pair, findings: list[Finding]) -> str:
    mine = [f.cause for f in findings if f.pair == pair.label() and not f.note]
    if mine:
        return "; ".join(mine)
    notes = [f.cause for f in findings if f.pair == pair.label()]
    if notes:
        return "; ".join(notes)
    return ("no hyperparameter of this pair that the lint reads differs: an op between the previous pair and this "
            "one differs (an activation, a pooling, a padding layer, the operands of an add or a concatenation)")


def prove(name: str, batch: int = 4, seed: int = 0) -> dict:
    """Prove the twin ``name`` (any provider); returns a JSON-able dict whose ``ok`` says whether they are one network.

    Raises:
        ProofError: the weights do not pair, or one side cannot run on the other's input.
        bench.zoo.TwinsError: a builder raises or returns the wrong type.
    """
    import keras
    import torch

    from bench.twins.pairing import KindError, PairingError, keras_call_order, pair_twins, transfer
    from bench.zoo import TwinsError, twin_of
    from bench.zoo.counts import keras_param_counts, torch_param_counts
    twin = twin_of(name)
    fp64 = _fp64_here()
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    tm = twin.build("torch")
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float64" if fp64 else "float32")
    keras.config.set_floatx("float64" if fp64 else "float32")  # keras.Input's dtype: floatx, not the policy
    try:
        km = twin.build("keras")
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    try:
        pairs, strategy = pair_twins(tm, km, twin.input_size, twin.input_channels, twin.weight_map)
    except KindError as e:
        raise TwinsError(f"twin {name!r}: {e}") from None
    except PairingError as e:
        raise ProofError(f"twin {name!r}: {e}") from None
    findings = lint(pairs)
    dtype = torch.float64 if fp64 else torch.float32
    tm = tm.to(dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, twin.input_channels, twin.input_size, twin.input_size))
    _calibrate(tm, x, dtype)
    transfer(pairs)
    t_out: dict = {}
    hooks = [p.module.register_forward_hook(lambda mod, i, o, __n=p.torch_name: t_out.setdefault(__n, o.detach()))
             for p in pairs]
    try:
        with torch.no_grad():
            yt = tm(torch.from_numpy(x).to(dtype)).numpy()
    finally:
        for h in hooks:
            h.remove()
    k_out: dict = {}
    xk = x.transpose(0, 2, 3, 1).astype("float64" if fp64 else "float32")
    try:
        keras_call_order(km, xk, record=k_out)
        yk = np.asarray(keras.ops.convert_to_numpy(km(xk, training=False)))
    except Exception as e:
        raise ProofError(f"twin {name!r}: the keras twin does not run on a {xk.shape} batch: "
                         f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    bound = _bound(fp64, yt, tm, x)
    layers = _compare_layers(pairs, t_out, k_out, fp64, bound)
    logit_diff = float(np.max(np.abs(yt - yk))) if yt.shape == yk.shape else float("inf")
    first = next((row for row in layers if not row["ok"]), None)
    result = {"model": name, "source": twin.source, "sha256": twin.sha256, "backend": keras.backend.backend(),
              "precision": "fp64" if fp64 else "fp32", "pairing": strategy, "pairs": len(pairs),
              "torch_params": torch_param_counts(tm), "keras_params": keras_param_counts(km),
              "max_abs_diff": logit_diff, "bound": bound if not fp64 else FP64_BOUND * max(1.0, float(np.max(np.abs(yt)))),
              "lint": [f.__dict__ for f in findings], "layers": layers}
    stated = [f for f in findings if not f.note]  # a difference the outputs of one eval pass cannot show (momentum)
    result["ok"] = first is None and logit_diff <= result["bound"] and not stated
    if first is None and logit_diff <= result["bound"] and stated:
        result["first_difference"] = {"torch": stated[0].pair.split(" <-> ")[0], "keras": stated[0].pair.split(" <-> ")[1],
                                      "max_abs_diff": 0.0, "bound": result["bound"], "likely_cause": stated[0].cause,
                                      "note": "the outputs agree in inference, but the pair's hyperparameters differ "
                                              "(training would part them)"}
    elif first is not None:
        pair = next(p for p in pairs if p.torch_name == first["torch"])
        result["first_difference"] = {**first, "likely_cause": _cause_for(pair, findings)}
    elif not result["ok"]:
        result["first_difference"] = {"torch": "(logits)", "keras": "(logits)", "max_abs_diff": logit_diff,
                                      "bound": result["bound"], "likely_cause": _cause_for_logits(findings)}
    return result


def _cause_for_logits(findings: list[Finding]) -> str:
    real = [f"{f.pair}: {f.cause}" for f in findings if not f.note]
    return "; ".join(real) if real else ("every paired layer agrees; an op after the last one differs (pooling, "
                                          "flatten, a final activation)")


def _bound(fp64: bool, yt, tm, x) -> float:
    if fp64:
        return FP64_BOUND
    import torch
    with torch.no_grad():
        y64 = tm.double()(torch.from_numpy(x).double()).numpy()
        tm.float()
    return max(FP32_TOL, 2.0 * float(np.max(np.abs(yt - y64))))


def _compare_layers(pairs, t_out: dict, k_out: dict, fp64: bool, bound: float) -> list[dict]:
    import keras
    rows = []
    for p in pairs:
        t, k = t_out.get(p.torch_name), k_out.get(p.keras_name)
        row = {"torch": p.torch_name, "keras": p.keras_name, "kind": p.kind}
        if t is None or k is None:
            row.update(max_abs_diff=None, bound=None, ok=True, note="not called in the inference pass")
            rows.append(row)
            continue
        a = _to_nhwc(t.cpu().numpy())
        act = getattr(p.layer, "activation", None)
        if act is not None and getattr(act, "__name__", "linear") != "linear":
            a = np.asarray(keras.ops.convert_to_numpy(act(keras.ops.convert_to_tensor(a))))
        b = np.asarray(keras.ops.convert_to_numpy(k))
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        lim = FP64_BOUND * max(1.0, scale) if fp64 else bound
        d = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
        row.update(max_abs_diff=d, bound=lim, ok=d <= lim)
        if a.shape != b.shape:
            row["note"] = f"output shapes differ: torch {a.shape} (as NHWC), keras {b.shape}"
        rows.append(row)
    return rows


def summary(result: dict) -> str:
    """The proof in one sentence, proven or not (the first line ``python -m bench.twins`` prints for a twin)."""
    head = (f"twin {result['model']!r} ({result['source']}) on Keras/{result['backend']} ({result['precision']}, "
            f"{result['pairs']} layer pairs, weights paired by {result['pairing']})")
    if not result["ok"]:
        return f"{head}: not proven one network (see the sentences on stderr)."
    return (f"{head}: proven one network: logits differ by at most {result['max_abs_diff']:.3g} against a bound of "
            f"{result['bound']:.3g}, every paired layer within its bound.")


def explain(result: dict) -> list[str]:
    """The failed proof in sentences (no traceback)."""
    f = result["first_difference"]
    d = f["max_abs_diff"]
    if f.get("note", "").startswith("the outputs agree"):
        return [f"twin {result['model']!r} ({result['source']}) is not one network on Keras/{result['backend']}: "
                f"torch {f['torch']} <-> keras {f['keras']} state different hyperparameters; one inference pass "
                "agrees, training would part them.", f"Likely cause: {f['likely_cause']}."]
    lines = [f"twin {result['model']!r} ({result['source']}) is not one network on Keras/{result['backend']} "
             f"({result['precision']}, weights paired by {result['pairing']}): the first layer pair that differs is "
             f"torch {f['torch']} <-> keras {f['keras']}, max |difference| {d:.3g} against a bound of {f['bound']:.3g}."]
    if f.get("note"):
        lines.append(f"{f['note']}.")
    lines.append(f"Likely cause: {f['likely_cause']}.")
    return lines
