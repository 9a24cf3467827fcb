"""The measures: one driver per CSV kind, each calling the stacks' interface (``bench.stacks.base.Stack``).

``throughput`` (timed train / inference steps), ``memory`` (allocator peak, what a step keeps),
``training`` (the ``epochs`` kind: a recipe, one row per epoch), ``profile`` (where a train step's time goes,
layer by layer: ``Stack.profile``), plus ``overhead`` (the harness against
each stack's plain script) and ``timing`` (warm-up, samples, statistics). A driver takes a job, the
run's folder, the job's first columns and the data location, and appends its rows.

Adding a measure: its driver here, registered in ``DRIVERS`` under its CSV kind, and, where the stacks
differ, one method on ``Stack`` with one implementation per stack.
"""
from __future__ import annotations

from importlib import import_module

# CSV kind -> "module:function" of its driver (imported in the job's process only)
DRIVERS = {"throughput": "bench.measures.throughput:run_throughput", "memory": "bench.measures.memory:run_memory",
           "epochs": "bench.measures.training:run_epochs", "profile": "bench.measures.profile:run_profile"}


def driver(kind: str):
    """The driver function of a CSV kind."""
    module, fn = DRIVERS[kind].split(":")
    return getattr(import_module(module), fn)
