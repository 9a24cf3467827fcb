"""The measures: one driver per CSV kind, each calling the stacks' interface (``bench.stacks.base.Stack``).

``throughput`` (timed train / inference steps), ``memory`` (allocator peak, what a step keeps),
``training`` (the ``epochs`` kind: a recipe, one row per epoch), ``profile`` (where a train step's time goes,
layer by layer: ``Stack.profile``), ``scaling`` (a train step on 1..R data-parallel replicas), plus ``overhead`` (the harness against
each stack's plain script) and ``timing`` (warm-up, samples, statistics). A driver takes a job, the
run's folder, the job's first columns and the data location, and appends its rows.

Adding a measure: its driver here, one branch in ``driver`` under its CSV kind, and, where the stacks
differ, one method on ``Stack`` with one implementation per stack.
"""
from __future__ import annotations

DRIVER_KINDS = ("throughput", "memory", "epochs", "profile", "scaling")
# measures that start processes of their own for the stack (the replicas of a scaling job): their job's process
# imports no framework first
OWN_PROCESS_KINDS = ("scaling",)


def driver(kind: str):
    """The driver function of a CSV kind, imported here (in the job's process only; a reader can follow the route)."""
    if kind == "throughput":
        from bench.measures.throughput import run_throughput
        return run_throughput
    if kind == "memory":
        from bench.measures.memory import run_memory
        return run_memory
    if kind == "epochs":
        from bench.measures.training import run_epochs
        return run_epochs
    if kind == "profile":
        from bench.measures.profile import run_profile
        return run_profile
    if kind == "scaling":
        from bench.measures.scaling import run_scaling
        return run_scaling
    raise KeyError(f"no measure for CSV kind {kind!r}; kinds: {', '.join(DRIVER_KINDS)}")
