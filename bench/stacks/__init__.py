"""The stacks: PyTorch, and Keras 3 on TensorFlow, JAX and torch. One folder per framework, one registry.

A *stack* is everything that differs between the implementations a run compares: building a timed
step, synchronising, the training loop and its checkpoints, the memory counters and the plain-script
baseline of ``bench.overhead``. Each stack implements :class:`bench.stacks.base.Stack`; the measures
(``bench.measures``) call that interface and never branch on the framework or backend.

The registry (``bench.core.stack_registry``, re-exported here) is the one place that lists the stacks.
It is plain data (no framework is imported), so the planner, the preflight pass and the report read it
in any process; ``get_stack`` imports a stack's module only when it is used, in the job's own process,
after the process environment of the stack (``StackInfo.process_env``) has been set.

Adding a stack (say Keras on a future backend): one module implementing ``Stack`` (for Keras, a
subclass of ``bench.stacks.keras.KerasStack`` in ``bench/stacks/keras/<backend>.py``) and one
``register_stack(StackInfo(...))`` line in ``bench.core.stack_registry``.
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from bench.core.stack_registry import (  # noqa: F401  (the registry, re-exported: bench.stacks is where readers look)
    DEFAULT_BACKEND,
    FRAMEWORKS,
    KERAS_BACKENDS,
    PREALLOC_OFF,
    REFERENCE,
    STACKS,
    StackInfo,
    register_stack,
    stack_info,
    stack_name,
    stacks_of,
)

if TYPE_CHECKING:
    from bench.stacks.base import Stack, StepRunner


def get_stack(framework: str, backend: str | None = None) -> Stack:
    """The stack object of ``framework``; for Keras, on ``backend`` (None: this process's Keras backend).

    Imports the stack's module (and so its framework): call it in the job's own process.
    """
    if backend is None and len(stacks_of(framework)) > 1:
        backend = os.environ.get("KERAS_BACKEND") or _loaded_keras_backend()
    module, cls = stack_info(framework, backend).target.split(":")
    return getattr(importlib.import_module(module), cls)()


def _loaded_keras_backend() -> str | None:
    """The backend of an already configured Keras (its config file or default), read by Keras itself."""
    import keras
    return keras.backend.backend()


def make_step(model: str, framework: str, *args, **kwargs) -> StepRunner:
    """``get_stack(framework).make_step(StepSpec(model, ...))``: the step of ``model`` in this process's stack of
    ``framework`` (the arguments: :class:`bench.stacks.base.StepSpec`'s fields after ``model``, in order)."""
    from bench.stacks.base import StepSpec
    return get_stack(framework).make_step(StepSpec(model, *args, **kwargs))
