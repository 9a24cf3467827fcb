"""Test hook ``TWINBENCH_INJECT_LAYER_SLOWDOWN="<kind>:<fraction>[:<framework>]"`` (``;``-separated): every layer of
that kind (``conv``, ``batchnorm``, ``relu``, ... as the profile names kinds) does ``fraction`` more of its own work
(0.15: 15% more), in the framework named (``torch`` or ``keras``; every framework when none is named), so that a
profile diff can be tested against a known cause (as ``TWINBENCH_INJECT_SLOWDOWN`` slows a whole job's timed step).

The extra work is real work, not a sleep: the layer runs once more on the first ``round(fraction x batch)`` examples
of its input (at least one), and adds 0 x the mean of that output to its result, so forward and backward both pay it
in every execution mode (eager, graphs, XLA, compiled) and the profiler attributes it to the layer itself. Each
stack applies it where it builds its twin (``bench.stacks.pytorch.inject``, ``bench.stacks.keras.inject``)."""
from __future__ import annotations

import os

ENV = "TWINBENCH_INJECT_LAYER_SLOWDOWN"


def layer_slowdowns(framework: str) -> dict[str, float]:
    """``{kind: fraction}`` the hook asks of ``framework``'s twin; empty when the variable is unset."""
    out = {}
    for part in filter(None, os.environ.get(ENV, "").split(";")):
        kind, _, rest = part.partition(":")
        fraction, _, fw = rest.partition(":")
        if not fw or fw == framework:
            out[kind.strip()] = float(fraction)
    return out


def extra_rows(batch: int | None, fraction: float) -> int | None:
    """How many examples the extra pass takes: round(fraction x batch), at least 1 (None: the batch is unknown)."""
    return None if batch is None else max(1, round(fraction * batch))


def batch_of(args) -> int | None:
    """The batch size of a layer's call: the first dimension of its first tensor argument (lists followed)."""
    v = args[0] if args else None
    while isinstance(v, (list, tuple)) and v:
        v = v[0]
    shape = getattr(v, "shape", None)
    return shape[0] if shape is not None and len(shape) else None


def head(args, n: int | None):
    """Every tensor argument (in lists too) cut to its first ``n`` examples (``n`` None: unchanged)."""
    def cut(v):
        if isinstance(v, (list, tuple)):
            return type(v)(cut(i) for i in v)
        return v[:n] if n is not None and getattr(v, "shape", None) is not None and len(v.shape) else v
    return [cut(a) for a in args]
