"""Parity across replicas: k steps at global batch B on R replicas against one replica at batch B.

Every case (a stack, a replica count, a BatchNorm mode) runs in its own process (``run_case``, via
``python -m bench.twins.dp_parity --case ...``): the device-count flags (JAX's host devices, TensorFlow's
logical CPUs) must be set before the framework is imported. Every case starts from the same PyTorch
initial weights (one seed), copied into the Keras twin by ``bench.twins.transfer``, and sees the same
batches (standard-normal images, uniform labels, one numpy seed) in the same order; each stack trains with
its standard data-parallel API (``bench.stacks.pytorch.ddp``, ``bench.stacks.keras.data_parallel``).

``dp_parity`` compares, per BatchNorm mode: each stack at R replicas against itself at 1 (``replicas``
rows), and the stacks against each other at the same R (``twins`` rows): the max abs difference of the
trainable weights and, separately, of the BN moving statistics. With synchronised BN the R-replica step
is the 1-replica step up to the order of sums, so in float64 the weights agree within ``FLOOR_FP64``
(1e-7) where the stack computes float64 (PyTorch, Keras on TensorFlow); Keras on JAX computes BN moments in
float32 whatever the policy (``bench.twins.train_parity``), so its rows carry float32's bound. With local
BN the difference is a result, reported, not bounded. Stacks without a mode (JAX has no local BN under
``DataParallel``) give a row with ``null`` and the reason.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from bench.stacks.pytorch.ddp import NO_SYNC_BN_CPU
from bench.twins.train_parity import FLOOR_FP64

FLOOR_FP32_BN = 1e-5  # Keras on JAX: BN moments in float32 (train_parity's FLOOR_BN)
# (stack, BN mode) a stack's data-parallel path lacks on a CPU, and why (the stacks say)
MISSING = {("keras-jax", "local"): "keras.distribution.DataParallel shards one jitted program: BatchNorm moments are "
                                   "reduced over the global batch, so JAX has no local-BN mode",
           ("pytorch", "sync"): NO_SYNC_BN_CPU}


def _batches(spec, steps: int, batch: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    size, ch = spec.input_size, spec.input_channels
    return [(rng.standard_normal((batch, ch, size, size)).astype("float32"),
             rng.integers(0, spec.num_classes, batch).astype("int64")) for _ in range(steps)]


def _torch_case(t, backend, model, options, batches, replicas, bn, recipe, precision):
    """DDP from the twin's initial state; rank 0's state back into ``t``, read as the Keras twin's arrays."""
    import torch

    from bench.stacks.pytorch.ddp import ddp_train
    from bench.twins.train_parity import _torch_arrays
    state = {k: v.detach().numpy().copy() for k, v in t.state_dict().items()}
    out = ddp_train(model, options, state, batches, replicas, bn, recipe, precision)
    t.load_state_dict({k: torch.from_numpy(v).to(t.state_dict()[k].dtype) for k, v in out.items()})
    return _torch_arrays(t)


def _keras_case(t, backend, model, options, batches, replicas, bn, recipe, precision):
    """The Keras twin on ``backend``, given ``t``'s initial weights (``torch_to_keras``), data-parallel."""
    from bench.stacks.keras.data_parallel import device_count, keras_dp_train
    from bench.twins.train_parity import _keras_arrays
    from bench.twins.transfer import torch_to_keras
    if replicas > device_count():
        raise ValueError(f"{replicas} replicas, {device_count()} devices")
    km = keras_dp_train(model, options, lambda k: torch_to_keras(t, k), batches, replicas, bn, recipe, precision)
    return _keras_arrays(km)


# stack -> (Keras backend to set up before import, or None; the case)
CASES = {"pytorch": (None, _torch_case), "keras-jax": ("jax", _keras_case),
         "keras-tensorflow": ("tensorflow", _keras_case)}


def run_case(stack: str, replicas: int, bn: str, model: str, options: dict, steps: int, batch: int, seed: int,
             precision: str) -> dict[str, list[np.ndarray]]:
    """One case in this process: {keras layer name: float64 arrays in Keras layout} after training."""
    backend, case = CASES[stack]
    if backend:
        os.environ["KERAS_BACKEND"] = backend
        from bench.stacks.keras.data_parallel import prepare_process
        prepare_process(backend, replicas)
    import torch

    from bench.zoo import build, get_spec
    from bench.zoo.recipes import recipe_for

    spec = get_spec(model, **options)
    recipe = recipe_for("smoke", spec.family, batch_size=batch)
    torch.manual_seed(seed)
    t = build(model, "torch", **options)
    return case(t, backend, model, options, _batches(spec, steps, batch, seed), replicas, bn, recipe, precision)


def _spawn_case(stack, replicas, bn, cfg) -> dict | str:
    """Run a case in a child process; its arrays, or the child's error text."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "w.npz")
        cmd = [sys.executable, "-m", "bench.twins.dp_parity", "--case", stack, str(replicas), bn, out,
               json.dumps(cfg)]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode:
            return (p.stderr.strip().splitlines() or ["no output"])[-1]
        z = np.load(out)
        arrs: dict[str, list] = {}
        for key in sorted(z.files, key=lambda k: int(k.rsplit("|", 1)[1])):
            arrs.setdefault(key.rsplit("|", 1)[0], []).append(z[key])
        return arrs


def _diff(a: dict, b: dict) -> dict:
    """Max |a - b| over weights (every array but BN moving stats) and over BN moving statistics."""
    w = s = 0.0
    for name, arrs in a.items():
        bn = len(arrs) == 4  # gamma, beta, moving mean, moving variance
        for i, (x, y) in enumerate(zip(arrs, b[name], strict=True)):
            d = float(np.max(np.abs(x - y)))
            if bn and i >= 2:
                s = max(s, d)
            else:
                w = max(w, d)
    return {"weights_diff": w, "bn_stats_diff": s}


def _bound(stacks: tuple[str, ...], bn: str, precision: str) -> float | None:
    """float64: a stack against itself at 1 replica with synchronised BN, and two twins under the same
    mode (local included: both split the batch into the same contiguous slices), within 1e-7; a twin row
    with Keras on JAX (BN moments in float32) within float32's floor. Local BN against 1 replica, and
    float32, are reported, not bounded."""
    if precision != "fp64" or (len(stacks) == 1 and bn != "sync"):
        return None
    return FLOOR_FP32_BN if len(stacks) > 1 and "keras-jax" in stacks else FLOOR_FP64


def dp_parity(model: str = "resnet20_v1", options: dict | None = None, replicas: int = 2, steps: int = 3,
              batch: int = 8, seed: int = 0, precision: str = "fp64", bn_modes=("sync", "local"),
              stacks=("pytorch", "keras-jax", "keras-tensorflow")) -> list[dict]:
    """The parity table: rows ``{kind, stacks, bn, replicas, weights_diff, bn_stats_diff, bound, ok, reason}``."""
    options = dict(depth=8, input_size=8) if options is None else options
    cfg = dict(model=model, options=options, steps=steps, batch=batch, seed=seed, precision=precision)
    rows = []
    for bn in bn_modes:
        runs = {}
        for st in stacks:
            if (st, bn) in MISSING:
                rows.append(dict(kind="replicas", stacks=[st], bn=bn, replicas=replicas, weights_diff=None,
                                 bn_stats_diff=None, bound=None, ok=None, reason=MISSING[st, bn]))
                continue
            runs[st] = {r: _spawn_case(st, r, bn, cfg) for r in (1, replicas)}
        pairs = [("replicas", [st], runs[st][1], runs[st][replicas]) for st in runs]
        names = list(runs)
        pairs += [("twins", [a, b], runs[a][replicas], runs[b][replicas])
                  for i, a in enumerate(names) for b in names[i + 1:]]
        for kind, sts, x, y in pairs:
            row = dict(kind=kind, stacks=sts, bn=bn, replicas=replicas, precision=precision,
                       bound=_bound(tuple(sts), bn, precision), reason=None)
            if isinstance(x, str) or isinstance(y, str):
                row.update(weights_diff=None, bn_stats_diff=None, ok=False, reason=x if isinstance(x, str) else y)
            else:
                row.update(_diff(x, y))
                row["ok"] = None if row["bound"] is None else row["weights_diff"] <= row["bound"]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.twins.dp_parity",
                                 description="Parity across replicas: k steps on R replicas against 1, per stack "
                                             "and BatchNorm mode.")
    ap.add_argument("--case", nargs=5, metavar=("STACK", "REPLICAS", "BN", "OUT", "CFG"), help=argparse.SUPPRESS)
    ap.add_argument("--model", default="resnet20_v1")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--precision", default="fp64", choices=("fp32", "fp64"))
    args = ap.parse_args(argv)
    if args.case:
        stack, r, bn, out, cfg = args.case
        arrs = run_case(stack, int(r), bn, **json.loads(cfg))
        np.savez(out, **{f"{n}|{i}": a for n, xs in arrs.items() for i, a in enumerate(xs)})
        return 0
    print(json.dumps(dp_parity(args.model, replicas=args.replicas, precision=args.precision), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
