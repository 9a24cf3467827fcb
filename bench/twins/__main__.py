"""``python -m bench.twins``: are the twins one network?

``python -m bench.twins MODEL [MODEL...] [--backend jax]`` checks inference parity in a fresh process (so
``KERAS_BACKEND`` can differ from the caller's) and prints one JSON line per model.
``python -m bench.twins --train MODEL...`` checks *training* parity instead (``bench.twins.train_parity``):
k steps of the project's training in both twins, weights and BN statistics compared after each step.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys


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
    from bench.core.stack_registry import stack_info
    for module in stack_info("keras", os.environ.get("KERAS_BACKEND")).preimport:  # Keras on torch: torch first
        importlib.import_module(module)
    from bench.zoo import list_models
    names = [n for p in args.models for n in (list_models(p) or [p])]
    if args.train:
        from bench.zoo.recipes import RECIPES
        if args.recipe not in RECIPES or args.steps < 1 or args.batch < 2:
            print(f"error: --train needs a recipe among {', '.join(RECIPES)}, --steps >= 1 and --batch >= 2 "
                  f"(got {args.recipe!r}, {args.steps}, {args.batch})", file=sys.stderr)
            return 2
        from bench.twins.train_parity import train_parity
        ok = True
        for n in names:
            r = train_parity(n, steps=args.steps, batch=args.batch, recipe=args.recipe, precision=args.precision)
            ok = ok and r["ok"]
            print(json.dumps(r), flush=True)
        return 0 if ok else 1
    from bench.twins.parity import parity
    for n in names:
        print(json.dumps(parity(n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
