"""Training-step parity of the twins: same weights, same batches, k steps of the project's own training.

``python -m bench.twins --train MODEL...`` (or :func:`train_parity`) builds both twins, copies the
PyTorch weights into the Keras twin, and runs ``steps`` training steps on the same batches with the
project's own training semantics: the recipe's optimizer, momentum, coupled weight decay and
learning-rate schedule (``bench.stacks.pytorch.train.torch_optimizer`` / ``bench.stacks.keras.optimizers.keras_optimizer``), mean
cross-entropy on logits, BN in training mode, float32 (mixed precision off). After every step it
compares every trainable weight and every BN moving statistic of the two twins.

The bound is not a guess: the same steps run a third time, in PyTorch in float64. The distance of
PyTorch float32 from float64 is how far float32 rounding alone carries one framework on these steps
(the *yardstick*); the twins may differ by ``factor`` times that (each twin carries its own rounding,
in its own op order), or by an absolute floor below which float32 cannot resolve anything. At lr 0.1
training amplifies rounding step after step (chaos, issue #14), so a fixed tolerance would be either
too loose after one step or fail after three; the yardstick grows with it.

Why float32 parity is luck beyond a few steps, and what the DenseNet "excess" of issue #14 was: a ReLU
is not smooth. When a pre-activation lies within float32 rounding of zero, one twin may pass it and the
other zero it; the gradient then differs by that element's whole contribution, and a conv kernel's
gradient for that output channel (all 9 x C_in taps) moves by ~1e-3 at once. Measured (resnet20_v1,
paper recipe, batch 16, seed 0): after one step the weights of the twins agree to 1.2e-7; at the second
step one element of ``stage2_block1_bn1``'s output is +1.6e-6 in PyTorch and -8.3e-7 in Keras, and
``stage2_block1_conv1``'s kernel gradient differs in 280 of 9,216 entries (one output channel), by up to
1.1e-3, so that kernel differs by 1.1e-4 after the step; every layer before it follows through the
backward pass. PyTorch float32 against float64 flips such an element less often (its forward rounding
is smaller than the gap between two libraries' kernels), so the yardstick can miss a flip the twins hit.
A DenseNet has far more ReLUs per image than a ResNet of the same size (each layer re-activates the
concatenation of all earlier maps: quadratic in block depth), hence more flips per step and its larger
one-step differences; the same flips separate PyTorch float32 from float64 on a DenseNet-BC (5.5e-5 after
one step at depth 16). ``precision="fp64"`` removes them: in float64 the twins of every family, DenseNets
included, agree to 1e-8 after 3 steps (the float32 lr of Keras' schedule is the only difference left),
so no op computes differently (concat order, pooling, BN epsilon, weight decay, momentum, loss reduction).

Batches: standard-normal images and uniform labels from one numpy seed, so the check needs no data.

Backends: checked on TensorFlow (tests), Keras' torch backend (agrees to 1.2e-7 after 2 steps) and JAX
(tests: a subprocess). JAX once failed this check (weights 3.8e-2 apart after one step, the Keras update
~1.9x PyTorch's) while a bare ``train_on_batch`` matched: the cause was the check's weight transfer, not
Keras' training on JAX. ``Tensor.numpy()`` is a view of the torch tensor, and the JAX backend kept such
contiguous arrays without a copy (aligned host buffers are aliased on the CPU), so every bias, BN gamma,
beta and moving statistic of the Keras twin *was* the PyTorch tensor; PyTorch's in-place
``optimizer.step()`` and BN update (run first) moved the Keras twin too, which then took its own step
from there (conv and dense kernels, transposed copies, were spared). ``bench.twins._to_keras_arrays``
now copies. the training loops never share memory between the twins and was not affected.

``fp64`` on JAX needs ``JAX_ENABLE_X64=1`` and, on JAX and Keras' torch backend, is not float64 in BN:
Keras' ``backend.result_type`` maps float64 to float32 on every backend but TensorFlow, and Keras'
``BatchNormalization`` computes in ``result_type(dtype, "float32")`` (float32): measured (resnet20_v1
depth 8, float64 policy, JAX) eval-mode BN outputs 3.8e-7 from PyTorch float64, so ``fp64`` there shows
float32 rounding and its ReLU flips (1.5e-4 after 2 paper steps); its fp64 bound holds on TensorFlow only.
"""
from __future__ import annotations

import copy

import numpy as np

from bench.zoo.specs import keras_name

FACTOR = 4.0          # twins may differ by 4x one framework's own float32 error (2 independent roundings, x2 margin)
FLOOR_WEIGHTS = 1e-6  # absolute floor: float32 resolution of weights ~0.1-1 after a few steps
FLOOR_BN = 1e-5       # absolute floor for BN moving statistics (issue #14: within 1e-5 after one step)
FLOOR_FP64 = 1e-7     # float64 twins: Keras' schedule yields a float32 lr (1.5e-8 relative: ~1e-8 on a weight)


def _torch_arrays(tm, pairs=None) -> dict[str, list[np.ndarray]]:
    """{keras layer name: arrays in Keras layout} (BN: gamma, beta, moving mean, moving var), float64.

    ``pairs`` (``bench.twins.pairing.Pair``): the twins' pairing, looked up in ``tm`` by module name (``tm`` may be
    a copy of the paired model); without it, the zoo's canonical names."""
    if pairs is None:
        from bench.twins.transfer import _to_keras_arrays, torch_layers
        return {keras_name(n): [a.astype("float64") for a in _to_keras_arrays(m)] for n, m in torch_layers(tm).items()}
    from bench.twins.pairing import ROLES, keras_tensors, torch_to_keras_array
    modules = dict(tm.named_modules())
    out = {}
    for p in pairs:
        m, kt = modules[p.torch_name], keras_tensors(p.layer)
        own = {**dict(m.named_parameters(recurse=False)), **dict(m.named_buffers(recurse=False))}
        out[p.keras_name] = [torch_to_keras_array(p.kind, kr, own[tr].detach().cpu().double().numpy(), tuple(kt[kr].shape))
                             for tr, kr in ROLES[p.kind] if tr in own]
    return out


def _keras_arrays(km, pairs=None) -> dict[str, list[np.ndarray]]:
    if pairs is None:
        from bench.twins.transfer import keras_layers
        return {n: [np.asarray(w, dtype="float64") for w in lyr.get_weights()] for n, lyr in keras_layers(km).items()}
    import keras

    from bench.twins.pairing import ROLES, keras_tensors
    out = {}
    for p in pairs:
        kt = keras_tensors(p.layer)
        out[p.keras_name] = [np.asarray(keras.ops.convert_to_numpy(kt[kr]), dtype="float64")
                             for _, kr in ROLES[p.kind] if kr in kt]
    return out


def _max_diff(a: dict, b: dict, kinds: dict) -> dict:
    """Largest |a - b| over trainable weights and over BN moving statistics, with where it is."""
    out = {"weights": (0.0, ""), "bn_stats": (0.0, "")}
    for name, arrs in a.items():
        for i, (x, y) in enumerate(zip(arrs, b[name], strict=True)):
            which = "bn_stats" if kinds[name] == "bn" and i >= 2 else "weights"
            d = float(np.max(np.abs(x - y)))
            if d > out[which][0]:
                label = f"{name}:{['gamma', 'beta', 'moving_mean', 'moving_variance'][i]}" if kinds[name] == "bn" \
                    else f"{name}:{['kernel', 'bias'][i]}"
                out[which] = (d, label)
    return out


class TrainParityError(Exception):
    """The twins cannot be trained side by side (their weights do not pair); the message says why."""


def explain(result: dict) -> list[str]:
    """A failed training parity in sentences: the first step over its bound, where, and the likely cause."""
    row = next(r for r in result["per_step"] if not r["ok"])
    lines = []
    for which, what in (("bn_stats", "BatchNorm moving statistics"), ("weights", "trainable weights")):
        if row[f"{which}_diff"] > row[f"{which}_bound"]:
            where = row[f"{which}_where"]
            layer, _, tensor = where.partition(":")
            pair = result.get("pairs", {}).get(layer, layer)
            lines.append(f"twin {result['model']!r}: after step {row['step']} the {what} differ most at {pair} "
                         f"({tensor}), {row[f'{which}_diff']:.3g} against a bound of {row[f'{which}_bound']:.3g}.")
            if which == "bn_stats":
                lines.append("Likely cause: the BatchNorm convention of that pair: momentum (torch m = 1 - keras m) "
                             "or the moving variance (Keras' BatchNormalization folds the biased batch variance, "
                             "PyTorch the unbiased one: models_tf.common.TwinBatchNormalization folds PyTorch's).")
            else:
                lines.append("Likely cause: the training step differs (optimizer, weight decay, loss), or the "
                             "forward pass does: python -m bench.twins without --train names the first layer.")
    return lines


def bound(yardstick: float, floor: float, factor: float = FACTOR) -> float:
    """The twins' allowed difference: ``factor`` x the yardstick, never below ``floor``."""
    return max(floor, factor * yardstick)


def train_parity(name: str, steps: int = 3, batch: int = 16, recipe: str = "paper", seed: int = 0,
                 precision: str = "fp32", **options) -> dict:
    """Train both twins of ``name`` ``steps`` steps on the same batches; compare after every step.

    Args:
        name: registry name.
        steps: training steps (the schedule sees them as one epoch of ``steps`` steps).
        batch: examples per step.
        recipe: recipe name (``bench.zoo.recipes``); its batch size is replaced by ``batch``.
        seed: init and data seed.
        precision: ``fp32``: the twins in float32, bounded by PyTorch's own float32-vs-float64 distance
            (the yardstick, run alongside). ``fp64``: both twins in float64 (Keras policy ``float64``),
            bounded by ``FLOOR_FP64``: float64 leaves rounding no room to flip a ReLU (see the module
            docstring), so what remains is the training semantics alone.
        **options: spec overrides (e.g. ``depth=8`` for a cheap member of a family).

    Returns:
        One JSON-able dict: per step the max difference of trainable weights and of BN moving
        statistics between the twins, the yardstick of each, the bound, where the largest twin
        difference sits, and ``ok`` (every step within its bounds).
    """
    import keras
    import torch
    import torch.nn.functional as F

    from bench.stacks import get_stack
    from bench.stacks.keras.optimizers import compile_keras, keras_optimizer
    from bench.stacks.pytorch.train import torch_optimizer
    from bench.twins.pairing import PairingError, pair_twins, transfer
    from bench.zoo import build, get_entry, get_spec
    from bench.zoo.recipes import recipe_for

    if precision not in ("fp32", "fp64"):
        raise ValueError(f"precision must be fp32 or fp64, got {precision!r}")
    spec = get_spec(name, **options)
    r = recipe_for(recipe, spec.family, batch_size=batch)
    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    t32 = build(name, "torch", **options)
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_dtype_policy("float32" if precision == "fp32" else "float64")
    user = get_entry(name).twin
    try:
        if user is not None:  # keras.Input's dtype is floatx, not the policy's
            keras.config.set_floatx("float32" if precision == "fp32" else "float64")
        km = build(name, "keras", **options)
        try:
            pairs, _ = pair_twins(t32, km, spec.input_size, spec.input_channels, user.weight_map if user else None)
        except PairingError as e:
            raise TrainParityError(f"twin {name!r}: {e}") from None
        transfer(pairs)
        t64 = copy.deepcopy(t32).double()
        kinds = {p.keras_name: p.kind for p in pairs}
        labels = {p.keras_name: p.label() for p in pairs}
        backend = keras.backend.backend()
        # the project's own optimizers and Keras compile (loss, jit choice) as the Keras training loop uses them
        compile_keras(km, keras_optimizer(r, steps), get_stack("keras", backend).default_exec_mode("cpu") == "jit")
        torch_models = {"fp32": t32, "fp64": t64} if precision == "fp32" else {"fp64": t64}
        opts = {k: torch_optimizer(r, t) for k, t in torch_models.items()}
        rng = np.random.default_rng(seed)
        size, ch = spec.input_size, spec.input_channels
        rows = []
        for step in range(steps):
            x = rng.standard_normal((batch, ch, size, size)).astype("float32")
            y = rng.integers(0, spec.num_classes, batch)
            lr = r.lr_at(step, steps)
            for k, t in torch_models.items():
                # the step of bench.stacks.pytorch.train.train_torch without autocast and scaler (mixed precision off)
                t.train()
                for g in opts[k].param_groups:
                    g["lr"] = lr
                logits = t(torch.from_numpy(x).to(torch.float32 if k == "fp32" else torch.float64))
                loss = F.cross_entropy(logits, torch.from_numpy(y))
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
            km.train_on_batch(x.transpose(0, 2, 3, 1).astype("float32" if precision == "fp32" else "float64"), y)
            ak, a64 = _keras_arrays(km, pairs), _torch_arrays(t64, pairs)
            if precision == "fp32":
                a32 = _torch_arrays(t32, pairs)
                twin, yard = _max_diff(a32, ak, kinds), _max_diff(a32, a64, kinds)
            else:
                twin, yard = _max_diff(a64, ak, kinds), None
            row = {"step": step + 1, "lr": lr}
            ok = True
            for which, floor in (("weights", FLOOR_WEIGHTS), ("bn_stats", FLOOR_BN)):
                b = bound(yard[which][0], floor) if yard else FLOOR_FP64
                row.update({f"{which}_diff": twin[which][0], f"{which}_where": twin[which][1],
                            f"{which}_torch_fp32_vs_fp64": yard[which][0] if yard else None, f"{which}_bound": b})
                ok = ok and twin[which][0] <= b
            row["ok"] = ok
            rows.append(row)
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    return {"model": name, "pairs": labels, "options": options, "backend": backend, "precision": precision, "recipe": r.name,
            "optimizer": r.optimizer, "nesterov": r.nesterov, "weight_decay": r.weight_decay, "batch": batch,
            "steps": steps, "ok": all(row["ok"] for row in rows), "per_step": rows}


def bn_convention_cost(model: str = "resnet20_v1", batch: int = 32, rounds: int = 40, seed: int = 0) -> dict:
    """Speed cost of the unbiased moving-variance rule in Keras: A/B train steps, interleaved in one process.

    A is the Keras twin as built (``TwinBatchNormalization``); B the same twin whose BN layers run
    Keras' stock ``BatchNormalization.call`` (biased update). Steps alternate A, B, A, B... on the
    same batch after a warm-up, so a machine that gets busier or quieter affects both alike.

    Returns:
        Median step seconds of each, their ratio A / B, and the backend.
    """
    import time

    import keras
    from keras import layers

    from bench.stacks.keras.optimizers import CoupledSGD, compile_keras
    from bench.zoo import build
    from models_tf.common import TwinBatchNormalization

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, batch)
    models = {}
    own = TwinBatchNormalization.call
    for label in ("unbiased (TwinBatchNormalization)", "biased (stock Keras)"):
        if label.startswith("biased"):
            TwinBatchNormalization.call = layers.BatchNormalization.call
        try:
            m = build(model, "keras")
            compile_keras(m, CoupledSGD(learning_rate=0.01, momentum=0.9, l2=1e-4), False)
            for _ in range(3):  # trace and warm up while the chosen call is in place
                m.train_on_batch(x, y)
        finally:
            TwinBatchNormalization.call = own
        models[label] = m
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for label, m in models.items():
            t0 = time.perf_counter()
            m.train_on_batch(x, y)
            times[label].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    a, b = med.values()
    return {"model": model, "backend": keras.backend.backend(), "batch": batch, "rounds": rounds,
            "median_step_s": med, "ratio_unbiased_over_biased": a / b}
