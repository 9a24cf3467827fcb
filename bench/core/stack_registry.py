"""The stack registry: which stacks exist, as plain data (no framework is imported here).

A *stack* is one implementation the runs compare: PyTorch, or Keras 3 on one backend. Its code lives in
``bench/stacks/`` (``bench.stacks.get_stack`` imports it in a job's own process); what every layer may
know about it without importing a framework -- its name, framework and backend columns, packages, exec
modes, the environment its process needs -- is registered here, once. The planner, the preflight pass,
the worker and the report read this table instead of branching on the framework.

Adding a stack: its module under ``bench/stacks/`` and one ``register_stack(StackInfo(...))`` below.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StackInfo:
    """What is known about a stack without importing it.

    Attributes:
        name: ``torch`` | ``keras/<backend>``: the implementation's name in reports and CSV labels.
        framework: the ``framework`` column (torch | keras).
        backend: the ``backend`` column (torch | tensorflow | jax).
        target: ``module:Class`` of its :class:`bench.stacks.base.Stack`.
        packages: import names it needs (checked with ``find_spec``, nothing imported).
        exec_modes: execution modes it accepts (``--exec-mode``).
        default_modes: the exec mode a job without ``--exec-mode`` runs in, per device (cuda, cpu).
        process_env: environment variables set before any framework import in a job's process.
        job_env: environment variables for one kind of job only, keyed by ``(job kind, device)``, set before any
            framework import (Keras on TensorFlow: its BFC CPU allocator for CPU memory jobs, so that
            ``get_memory_info('CPU:0')`` has a peak to read). Every other job of the stack has these variables
            removed, so its timings run on the framework's default allocator.
        preimport: modules imported first in a job's process (Keras on torch wants torch imported first).
        job_tag: the implementation's part of a job id (``torch``, ``keras-jax``).
        startup_s: rough process start-up cost of a GPU job, for ``--dry-run`` estimates.
        cpu_startup_s: the same on a CPU, where no device is initialised: process start and imports, then the first
            step's trace (a 2-core VM's jobs.csv, 2026-12-07: start 1.0-1.6 s torch, 3.6-5.0 s Keras on TensorFlow;
            a ResNet-20 first step 0.1 s torch, ~3 s Keras on TensorFlow).
        plain: what the plain-script baseline of ``bench.overhead`` is.
    """

    name: str
    framework: str
    backend: str
    target: str
    packages: tuple[str, ...]
    exec_modes: tuple[str, ...]
    default_modes: dict = field(default_factory=dict)
    process_env: dict = field(default_factory=dict)
    job_env: dict = field(default_factory=dict)
    preimport: tuple[str, ...] = ()
    job_tag: str = ""
    startup_s: float = 10.0
    cpu_startup_s: float = 3.0
    plain: str = ""

    def env_for(self, kind: str, device: str) -> tuple[dict, tuple[str, ...]]:
        """(variables to set, variables to remove) in the process of a ``kind`` job on ``device``: the stack's
        ``process_env`` plus its ``job_env`` for that job; the ``job_env`` variables of every other job removed."""
        mine = self.job_env.get((kind, device), {})
        others = {k for key, env in self.job_env.items() if key != (kind, device) for k in env} - set(mine)
        return {**self.process_env, **mine}, tuple(sorted(others))


STACKS: dict[str, StackInfo] = {}
REFERENCE = "torch"  # the stack every other is compared with (PyTorch eager)


def register_stack(info: StackInfo) -> StackInfo:
    """Add a stack to the registry.

    Raises:
        ValueError: a stack of that name, or of that framework and backend, is registered already.
    """
    if info.name in STACKS or any((s.framework, s.backend) == (info.framework, info.backend) for s in STACKS.values()):
        raise ValueError(f"stack {info.name!r} ({info.framework}/{info.backend}) is already registered")
    STACKS[info.name] = info
    return info


# Keras' default exec modes: XLA (jit) on a GPU; on a CPU, TensorFlow and torch run without it (TensorFlow's graph
# mode; there XLA only adds compile time: densenet_bc100_k12, batch 8, first train step 78.6 s jit vs 40.0 s nojit,
# median step 623 vs 631 ms), while JAX without jit runs op by op (resnet20_v1, batch 8, CPU: train step 57.0 ms
# jit vs 505.5 ms nojit), so JAX is jit everywhere.
_XLA_ON_GPU = {"cuda": "jit", "cpu": "nojit"}
_KERAS = dict(framework="keras", exec_modes=("jit", "nojit"), startup_s=20.0, cpu_startup_s=8.0, plain="model.fit")
register_stack(StackInfo("torch", "torch", "torch", "bench.stacks.pytorch:PyTorchStack", ("torch",),
                         ("eager", "compile", "step-compile"), {"cuda": "eager", "cpu": "eager"}, job_tag="torch",
                         plain="hand-written loop"))
register_stack(StackInfo("keras/tensorflow", backend="tensorflow", packages=("keras", "tensorflow"),
                         target="bench.stacks.keras.tensorflow:KerasTensorFlowStack", default_modes=_XLA_ON_GPU,
                         process_env={"KERAS_BACKEND": "tensorflow"}, job_tag="keras-tensorflow",
                         job_env={("memory", "cpu"): {"TF_CPU_ALLOCATOR_USE_BFC": "true"}}, **_KERAS))
register_stack(StackInfo("keras/jax", backend="jax", packages=("keras", "jax"), target="bench.stacks.keras.jax:KerasJaxStack",
                         default_modes={"cuda": "jit", "cpu": "jit"}, process_env={"KERAS_BACKEND": "jax"},
                         job_tag="keras-jax", **_KERAS))
register_stack(StackInfo("keras/torch", backend="torch", packages=("keras", "torch"),
                         target="bench.stacks.keras.torch:KerasTorchStack", default_modes=_XLA_ON_GPU,
                         process_env={"KERAS_BACKEND": "torch"}, preimport=("torch",), job_tag="keras-torch", **_KERAS))

# the pip extra (pyproject.toml) that installs each package a stack needs, and each framework's name in sentences
PACKAGE_EXTRAS = {"torch": "torch", "keras": "keras", "tensorflow": "keras", "jax": "jax"}
FRAMEWORK_LABELS = {"torch": "PyTorch", "keras": "Keras"}
FRAMEWORKS = tuple(dict.fromkeys(s.framework for s in STACKS.values()))  # torch, keras
KERAS_BACKENDS = tuple(s.backend for s in STACKS.values() if s.framework == "keras")  # tensorflow, jax, torch
DEFAULT_BACKEND = {fw: next(s.backend for s in STACKS.values() if s.framework == fw) for fw in FRAMEWORKS}
# environment every job's process gets before a framework import: no framework grabs the whole GPU up front,
# so the allocator peaks are the job's own
PREALLOC_OFF = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


def stack_info(framework: str, backend: str | None = None) -> StackInfo:
    """The stack of ``framework`` on ``backend`` (None: the framework's first backend; for a framework with a
    single stack, whatever its backend column says).

    Raises:
        ValueError: no such stack.
    """
    mine = [s for s in STACKS.values() if s.framework == framework]
    if len(mine) == 1:
        return mine[0]
    for s in mine:
        if s.backend == (backend or DEFAULT_BACKEND.get(framework)):
            return s
    raise ValueError(f"unknown stack {framework + '/' + str(backend)!r}; stacks: {', '.join(STACKS)}")


def stack_name(framework: str, backend: str | None = None) -> str:
    """``torch`` | ``keras/<backend>``: the implementation's name without its exec mode."""
    return stack_info(framework, backend).name


def stacks_of(framework: str) -> list[StackInfo]:
    """The registered stacks of one framework, in registry order."""
    return [s for s in STACKS.values() if s.framework == framework]
