"""The ``scaling`` measure: training step times of one model on 1..R data-parallel replicas, each stack in its
standard data-parallel API (PyTorch ``DistributedDataParallel``, gloo on a CPU; Keras 3 on JAX
``keras.distribution.DataParallel``; Keras 3 on TensorFlow ``tf.distribute.MirroredStrategy``).

Weak scaling: a fixed per-replica batch. Each (stack, replica count) runs in a process of its own, started here
(``python -m bench.measures.scaling``): device-count flags are read when the framework is imported, so the job's own
worker process, whose framework may already be loaded, cannot host the replicas. The efficiency at R replicas is the
median step time at 1 replica over that at R, with the 95% interval of ``bench.results.stats.bootstrap_ratio`` (the
statistics of every ratio of the project).

Used by ``bench.run --suite scaling`` (a ``scaling`` job: ``Job.replicas``, through :func:`run_scaling`) and by
``python -m bench.scaling`` (the standalone command, which adds the parity across replicas).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.results.stats import bootstrap_ratio

# stack -> (framework, backend, its data-parallel step timer "module:function" in bench.stacks)
DP = {"pytorch": ("torch", "torch", "bench.stacks.pytorch.ddp:step_times_job"),
      "keras-jax": ("keras", "jax", "bench.stacks.keras.data_parallel:step_times_job"),
      "keras-tensorflow": ("keras", "tensorflow", "bench.stacks.keras.data_parallel:step_times_job")}
DP_STACKS = tuple(DP)
NO_DP_PATH = {"keras-torch": "Keras on torch has no data-parallel path in TwinBench yet (Keras' guide wraps it in "
                             "DistributedDataParallel by hand)"}
COLLECTIVE = {"pytorch": {"cpu": "gloo", "cuda": "nccl"}, "keras-jax": "XLA",
              "keras-tensorflow": "MirroredStrategy all-reduce"}
BN_MODE = {"pytorch": {"cpu": "local", "cuda": "sync"}, "keras-jax": "sync", "keras-tensorflow": "sync"}


def _per_device(table: dict, stack: str, device: str) -> str:
    v = table[stack]
    return v[device] if isinstance(v, dict) else v


def max_replicas(device: str) -> int:
    """Replicas this machine holds: one per core on a CPU, one per GPU (``nvidia-smi -L``) on a GPU."""
    if device == "cpu":
        return os.cpu_count() or 1
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


DEVICES = ("cpu",)  # where data-parallel jobs run so far: the suites plan none elsewhere (bench.pipeline.suites)


def device_problem(device: str) -> str | None:
    """One sentence when data-parallel jobs cannot run on ``device`` (GPU replicas are not built yet), else None."""
    if device in DEVICES:
        return None
    return (f"device {device!r}: the data-parallel jobs run on CPU replicas only so far (gloo, host devices, "
            "logical CPUs); GPU replicas (nccl) are not built yet.")


def check(stacks: list[str], replicas: list[int], device: str) -> str | None:
    """One sentence for input no job can run, or None."""
    for st in stacks:
        if st in NO_DP_PATH:
            return f"{st}: {NO_DP_PATH[st]}."
        if st not in DP_STACKS:
            return f"unknown stack {st!r}; data-parallel stacks: {', '.join(DP_STACKS)}."
    problem = device_problem(device)
    if problem:
        return problem
    have = max_replicas(device)
    if max(replicas) > have or min(replicas) < 1:
        return f"{max(replicas)} replicas asked for, but this machine has {have} {device} device(s) for replicas."
    return None


def run_job(stack: str, replicas: int, model: str, options: dict, per_replica_batch: int, steps: int) -> list[float]:
    """In this process: the step times (s) of one (stack, replica count), by the stack's own timer."""
    import importlib
    _, backend, target = DP[stack]
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)(backend, replicas, model, options, per_replica_batch, steps)


def spawn(stack, replicas, cfg, device) -> tuple[list[float] | None, str | None, dict]:
    """One (stack, replica count) in its own process: (step times, None, the stack's environment columns) or (None,
    its last error line, {}). The times come back in a file, not on stdout (a worker's warning printed without a
    newline would run into a stdout line and lose the times)."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="twinbench-scaling-") as d:
        out = Path(d) / "times.json"
        cmd = [sys.executable, "-m", "bench.measures.scaling", stack, str(replicas), json.dumps(cfg), str(out)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TWINBENCH_SCALING_DEVICE": device}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode == 0 and out.exists():
            got = json.loads(out.read_text())
            return got["times"], None, got["env"]
    lines = [line.strip() for line in p.stderr.splitlines() if line.strip()]
    return None, (lines[-1] if lines else f"the job's process exited {p.returncode} and wrote no times"), {}


def scaling_row(stack: str, r: int, t: list[float] | None, base: list[float] | None, per_replica_batch: int,
                device: str, strong: bool = False, error: str | None = None) -> dict:
    """The row of one stack at ``r`` replicas: images/s and the efficiency against ``base`` (its 1-replica step
    times), with the 95% interval.

    Weak scaling (``strong`` False): ``per_replica_batch`` on every replica; efficiency = median step time at 1
    replica / at R. Strong scaling: ``per_replica_batch`` is the global batch at 1 replica, split over R;
    efficiency = median step time at 1 replica / (R x at R). 1 is ideal in both.
    """
    framework, backend, _ = DP[stack]
    per = per_replica_batch // r if strong else per_replica_batch
    row = dict(stack=stack, framework=framework, backend=backend, device=device, precision="fp32",
               scaling="strong" if strong else "weak", replicas=r, per_replica_batch=per, batch_size=r * per,
               collective=_per_device(COLLECTIVE, stack, device), bn_mode=_per_device(BN_MODE, stack, device),
               job_id=f"{stack}/scaling/r{r}", status="ok" if t else "error", error=error)
    if t:
        row["step_times_ms"] = ";".join(f"{1e3 * s:.4g}" for s in t)
        row["images_per_s"] = r * per / float(np.median(t))
        if base:
            k = r if strong else 1
            row["efficiency"] = float(np.median(base) / np.median(t)) / k
            lo, hi = bootstrap_ratio(base, t)
            row["efficiency_lo"], row["efficiency_hi"] = lo / k, hi / k
        else:
            row["null_reason"] = "no 1-replica times to compare with"
    return row


def rows_for(stack: str, times: dict[int, list[float] | None], errors: dict, per_replica_batch: int,
             device: str, strong: bool = False) -> list[dict]:
    """Rows of one stack, one per replica count in ``times`` (:func:`scaling_row`, against ``times[1]``)."""
    return [scaling_row(stack, r, t, times.get(1), per_replica_batch, device, strong, errors.get(r))
            for r, t in times.items()]


# a job's implementation (``StackInfo.job_tag``) -> its data-parallel stack above
DP_OF_TAG = {"torch": "pytorch", "keras-jax": "keras-jax", "keras-tensorflow": "keras-tensorflow",
             "keras-torch": "keras-torch"}


def dp_stack(job) -> str:
    """The data-parallel stack name (``pytorch``, ``keras-jax``, ...) of a job's implementation."""
    return DP_OF_TAG.get(job.stack.job_tag, job.stack.job_tag)


def _one_replica_times(out: Path, job, stack: str) -> list[float] | None:
    """The step times (s) of this run's 1-replica row of the same model, stack and per-replica batch (the plan runs
    it first), or None."""
    from bench.results.read import read_table
    from bench.results.schema import FILES
    path = out / FILES["scaling"]
    if not path.exists():
        return None
    df = read_table(path, "scaling").frame()
    if df.empty:
        return None
    mode = "strong" if job.strong else "weak"  # strong: the 1-replica job ran the whole global batch
    hit = df[(df.model == job.model) & (df["stack"] == stack) & (df.replicas == 1) & (df.status == "ok")
             & (df.per_replica_batch == job.batch_size) & (df["scaling"] == mode)]
    if hit.empty or not isinstance(hit.step_times_ms.iloc[-1], str):
        return None
    return [float(v) / 1e3 for v in hit.step_times_ms.iloc[-1].split(";")]


def run_scaling(job, out: Path, row: dict, data_dir: str | None) -> None:
    """A ``scaling`` job of ``bench.run``: ``job.replicas`` replicas at ``job.per_replica_batch`` examples each (weak:
    ``job.batch_size``; strong: its share of ``job.batch_size``), ``job.steps`` timed steps, in a process of their
    own; one row, its efficiency against this run's 1-replica row.

    Raises:
        RuntimeError: the stack has no data-parallel path, or the replicas' process failed (its last error line).
    """
    from bench.core import phases
    from bench.results.schema import FILES, append_row
    from bench.zoo import get_spec
    stack = dp_stack(job)
    problem = check([stack], [job.replicas], job.device)
    if problem:
        raise RuntimeError(problem)
    options = {} if job.depth is None else {"depth": job.depth}
    cfg = dict(model=job.model, options=options, per_replica_batch=job.per_replica_batch, steps=job.steps)
    phases.enter("build")  # the replicas' process: its start, imports, build and warm-up steps (timed steps moved below)
    times, error, env = spawn(stack, job.replicas, cfg, job.device)
    phases.enter("write")
    if error:
        raise RuntimeError(error)
    phases.CLOCK.reassign(sum(times), "build", "timed")
    base = times if job.replicas == 1 else _one_replica_times(out, job, stack)
    mine = scaling_row(stack, job.replicas, times, base, job.batch_size, job.device, strong=job.strong)
    if base is None:
        mine["null_reason"] = "no 1-replica row of this model, stack, batch and scaling mode in this run to compare with"
    append_row(out / FILES["scaling"], "scaling",
               {**row, **mine, **env, "job_id": job.job_id, "input_size": get_spec(job.model, **options).input_size})


if __name__ == "__main__":  # one (stack, replica count) in this process: python -m bench.measures.scaling STACK R CFG OUT
    _stack, _r, _cfg, _out = sys.argv[1:5]
    from bench.results.writes import write_json_atomic
    _times = run_job(_stack, int(_r), **json.loads(_cfg))
    from bench.stacks import get_stack
    _fw, _backend, _ = DP[_stack]
    _env = get_stack(_fw, None if _fw == _backend else _backend).env(os.environ.get("TWINBENCH_SCALING_DEVICE"))
    write_json_atomic(Path(_out), {"times": _times, "env": {k: v for k, v in _env.items() if k.endswith(("_version", "_name"))}})
