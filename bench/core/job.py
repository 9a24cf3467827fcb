"""The unit of a run: one measurement of one implementation, run in a fresh process (or, under ``--isolation
reused``, a throughput job in its stack's long-lived worker: ``bench.pipeline.pool``).

The plan (``bench.pipeline.suites``) makes jobs, the executors run them, the worker hands each to its
measure (``bench.measures``), and every row a job writes starts from ``Job.base_row``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.core.stack_registry import StackInfo, stack_info

# the job fields each CSV kind repeats in its rows (beside the common ones)
KIND_COLUMNS = {"throughput": ("measurement", "input"), "memory": ("measurement",), "epochs": ("recipe",),
                "profile": ("measurement",)}


@dataclass(frozen=True)
class Job:
    """One measurement, run in a fresh process or its stack's reused worker (``jobs.csv`` says which).

    Attributes:
        kind: throughput | memory | epochs | profile | scaling (the CSV it writes to).
        model: registry name.
        framework: torch | keras.
        keras_backend: tensorflow | jax | torch for Keras jobs (the worker sets it before importing Keras),
            None for torch jobs.
        precision: fp32 | bf16 | fp16.
        batch_size: examples per step (for epochs jobs: the recipe's batch).
        measurement: train | infer (throughput, memory).
        input: synthetic | real (throughput).
        exec_mode: torch eager | compile | step-compile; keras jit | nojit (None: the runner's default).
        steps: timed steps (throughput), measured steps (memory) or profiled steps (profile).
        max_warmup: cap on warm-up steps (warm-up runs until stable, at least 10).
        recipe: training recipe (epochs jobs).
        epochs: epochs override (None: the recipe's).
        train_subset / test_subset: first N examples only (smoke).
        device: cuda | cpu.
        depth: memory and profile jobs of a depth sweep: the registry model built at this depth (None: its own).
        seed: init and sampler seed of an epochs job (0, the default, leaves the job_id as it was).
        repeat: which of ``--repeats N`` processes this is (1..N; 0, the default, when N is 1: the job_id
            is left as it was, else it ends in ``/r<repeat>``).
        replicas: data-parallel replicas of a ``scaling`` job (0, the default, for every other kind).
        strong: a scaling job at a fixed global batch (``batch_size``, split over the replicas: strong scaling);
            False: a fixed per-replica batch (``batch_size`` per replica: weak scaling).
        twin_source / twin_sha256: a user twin's file and the sha256 of its text (None for a built-in); not part
            of the job id, in every row.
        parity: a user twin's proof before the run: proven | unproven (``--no-parity``); None for a built-in.
    """

    kind: str
    model: str
    framework: str
    keras_backend: str | None
    precision: str
    batch_size: int
    measurement: str = "train"
    input: str = "synthetic"
    exec_mode: str | None = None
    steps: int = 40
    max_warmup: int = 100
    recipe: str | None = None
    epochs: int | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "cuda"
    depth: int | None = None
    seed: int = 0
    repeat: int = 0
    replicas: int = 0
    strong: bool = False
    twin_source: str | None = None
    twin_sha256: str | None = None
    parity: str | None = None

    @property
    def job_id(self) -> str:
        parts = [self.kind, self.model, self.stack.job_tag, self.precision, f"b{self.batch_size}"]
        if self.kind == "epochs":
            parts += [self.recipe or "", f"e{self.epochs}" if self.epochs else "", f"n{self.train_subset}" if self.train_subset else "",
                      self.exec_mode or ""]
            parts.append(f"s{self.seed}" if self.seed else "")
        else:
            parts += [self.measurement, self.exec_mode or "default"]
            if self.kind == "profile":
                parts.append(f"n{self.steps}")
            if self.kind == "throughput":
                parts.append(self.input)
            if self.depth is not None:
                parts.append(f"d{self.depth}")
            if self.replicas:
                parts.append(f"x{self.replicas}" + ("-strong" if self.strong else ""))
        if self.repeat:
            parts.append(f"r{self.repeat}")
        return "/".join(p for p in parts if p)

    @property
    def per_replica_batch(self) -> int:
        """A scaling job's examples per replica per step (weak: ``batch_size``; strong: its share of it)."""
        return self.batch_size // max(self.replicas, 1) if self.strong else self.batch_size

    @property
    def global_batch(self) -> int:
        """A scaling job's examples per step over every replica."""
        return self.batch_size if self.strong else self.batch_size * max(self.replicas, 1)

    @property
    def stack(self) -> StackInfo:
        """The registry entry of the implementation this job runs."""
        return stack_info(self.framework, self.keras_backend)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def base_row(self, run_id: str) -> dict:
        """The columns a job knows before it runs (a failed job's row has at least these)."""
        row = {"run_id": run_id, "job_id": self.job_id, "model": self.model, "framework": self.framework,
               "backend": self.stack.backend, "exec_mode": self.exec_mode, "device": self.device,
               "precision": self.precision, "batch_size": self.batch_size}
        row.update({c: getattr(self, c) for c in KIND_COLUMNS.get(self.kind, ())})
        if self.twin_source:
            row.update(twin_source=self.twin_source, twin_sha256=self.twin_sha256, parity=self.parity)
        if self.replicas:
            row.update(replicas=self.replicas, scaling="strong" if self.strong else "weak",
                       per_replica_batch=self.per_replica_batch, batch_size=self.global_batch)
        return row
