"""``python -m bench.twins``: are the twins one network?

``python -m bench.twins MODEL [MODEL...] [--backend jax]`` proves each twin one network in a fresh process (so
``KERAS_BACKEND`` can differ from the caller's) and prints, per model, one sentence and then one JSON line on
stdout. Built-in twins and a user's (``--twins FILE``, ``bench.zoo.user``) take one path, ``bench.twins.proof``:
weights paired with no shared names, hyperparameters linted, logits and every paired layer's output compared in one
pass. A failed proof prints the first differing layer pair and its likely cause on stderr, exit status 1.
``python -m bench.twins --train MODEL...`` checks *training* parity instead (``bench.twins.train_parity``):
k steps of the project's training in both twins, weights and BN statistics compared after each step.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.twins",
                                 description="Check that the torch and keras twins are one network.")
    ap.add_argument("models", nargs="*", help="registry names or fnmatch patterns (default with --twins: the file's twins)")
    ap.add_argument("--twins", action="append", metavar="FILE", default=None,
                    help="a twins file (path.py, or module:attr) whose TWINS dict adds your own twins; repeatable")
    ap.add_argument("--backend", default=None, help="Keras backend for this process (default: KERAS_BACKEND)")
    ap.add_argument("--train", action="store_true",
                    help="training-step parity: same weights and batches, --steps steps of --recipe in both twins; "
                         "exit status 1 if a step exceeds its bound")
    ap.add_argument("--steps", type=int, default=3, help="--train: training steps (default 3)")
    ap.add_argument("--batch", type=int, default=16, help="--train: examples per step (default 16)")
    ap.add_argument("--recipe", default="paper", help="--train: recipe whose optimizer and lr schedule are used (default paper)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp64"),
                    help="--train: fp32 (bound: PyTorch's own float32-vs-float64 distance) or fp64 (both twins in float64)")
    return ap


class BadInput(Exception):
    """A bad argument; the message is the one sentence printed as ``error:`` (exit status 2)."""


def _check(args: argparse.Namespace) -> list[str]:
    """Every argument checked before any framework is imported; returns the model names.

    Raises:
        BadInput: the sentence naming the argument and the fix.
    """
    import importlib.util

    from bench.core.stack_registry import KERAS_BACKENDS, stack_info
    from bench.zoo import get_entry, list_models
    backend = args.backend or os.environ.get("KERAS_BACKEND") or "tensorflow"
    if backend not in KERAS_BACKENDS:
        raise BadInput(f"unknown Keras backend {backend!r} ({'--backend' if args.backend else '$KERAS_BACKEND'}); "
                 f"choose from {', '.join(KERAS_BACKENDS)}")
    if args.backend and "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
        raise BadInput("--backend must be chosen before keras is imported: run python -m bench.twins in a fresh process")
    missing = [p for p in stack_info("keras", backend).packages + ("torch",) if importlib.util.find_spec(p) is None]
    if missing:
        raise BadInput(f"the twins on Keras/{backend} need {', '.join(missing)}, not installed here: "
                 "pip install -e '.[all]' (or choose another --backend)")
    names = []
    if args.twins:
        from bench.zoo import TwinsError, load_user_twins
        from bench.zoo.user import set_env
        try:
            user = load_user_twins(args.twins)
        except TwinsError as e:
            raise BadInput(e.args[0]) from None
        set_env(args.twins)
        if not args.models:
            names += user
    elif not args.models:
        raise BadInput("give a model name (python -m bench.models lists them), or --twins FILE")
    for p in args.models:
        found = list_models(p)
        if not found:
            try:
                get_entry(p)
            except KeyError as e:
                raise BadInput(e.args[0]) from None
        names += found or [p]
    if args.train:
        from bench.zoo.recipes import RECIPES
        if args.recipe not in RECIPES or args.steps < 1 or args.batch < 2:
            raise BadInput(f"--train needs a recipe among {', '.join(RECIPES)}, --steps >= 1 and --batch >= 2 "
                     f"(got {args.recipe!r}, {args.steps}, {args.batch})")
    return names


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        names = _check(args)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    from bench.core.stack_registry import stack_info
    for module in stack_info("keras", os.environ.get("KERAS_BACKEND")).preimport:  # Keras on torch: torch first
        importlib.import_module(module)
    try:
        return _train(args, names) if args.train else _infer(names)
    except BadInput as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace, names: list[str]) -> int:
    from bench.twins.train_parity import TrainParityError, explain, train_parity
    from bench.zoo import TwinsError
    ok = True
    for n in names:
        try:
            r = train_parity(n, steps=args.steps, batch=args.batch, recipe=args.recipe, precision=args.precision)
        except TwinsError as e:
            raise BadInput(e.args[0]) from None
        except TrainParityError as e:
            print(f"error: {e}", file=sys.stderr)
            ok = False
            continue
        ok = ok and r["ok"]
        print(json.dumps(r), flush=True)
        if not r["ok"]:
            print("\n".join(explain(r)), file=sys.stderr)
    return 0 if ok else 1


def _infer(names: list[str]) -> int:
    from bench.twins.proof import ProofError, explain, prove, summary
    from bench.zoo import TwinsError
    ok = True
    for n in names:  # a built-in and a user's twin alike: the zoo is one provider of twins
        try:
            r = prove(n)
        except TwinsError as e:
            raise BadInput(e.args[0]) from None
        except ProofError as e:
            print(f"error: {e}", file=sys.stderr)
            ok = False
            continue
        print(summary(r), flush=True)
        print(json.dumps(r), flush=True)  # the machine-readable line: last of the twin's lines
        if not r["ok"]:
            print("\n".join(explain(r)), file=sys.stderr)
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
