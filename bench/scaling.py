"""``python -m bench.scaling``: data-parallel scaling rows per stack, and the parity across replicas.

Weak scaling: a fixed per-replica batch on 1, 2, ... R replicas, each stack in its standard
data-parallel API (PyTorch ``DistributedDataParallel``, gloo on a CPU; Keras 3 on JAX
``keras.distribution.DataParallel``; Keras 3 on TensorFlow ``tf.distribute.MirroredStrategy``). Every
(stack, replica count) is one job in its own process (device-count flags are read when the framework is
imported). The efficiency at R replicas is median step time at 1 / at R, with the 95% interval of
``bench.results.stats.bootstrap_ratio`` (the statistics of every ratio of the project). Rows go to
``results/<run_id>/scaling.csv`` (``bench.results.schema`` kind ``scaling``); ``--parity`` adds
``dp_parity.json`` (``bench.twins.dp_parity``). On a CPU the replicas share its cores: the figures are
the machinery's, not a scaling result.

Stands beside ``bench.run`` until the suites-as-data refactor lands; then a replica count becomes one more
field of a job and the ``scaling`` suite plans these jobs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.results.schema import FILES, append_row
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


def check(stacks: list[str], replicas: list[int], device: str) -> str | None:
    """One sentence for input no job can run, or None."""
    for st in stacks:
        if st in NO_DP_PATH:
            return f"{st}: {NO_DP_PATH[st]}."
        if st not in DP_STACKS:
            return f"unknown stack {st!r}; data-parallel stacks: {', '.join(DP_STACKS)}."
    if device != "cpu":
        return (f"device {device!r}: the data-parallel jobs run on CPU replicas only so far (gloo, host devices, "
                "logical CPUs); GPU replicas (nccl) are not built yet.")
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


def _spawn(stack, replicas, cfg, device) -> tuple[list[float] | None, str | None]:
    """One (stack, replica count) in its own process; its times come back in a file, not on stdout (a worker's
    warning printed without a newline would run into a stdout line and lose the times)."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="twinbench-scaling-") as d:
        out = Path(d) / "times.json"
        cmd = [sys.executable, "-m", "bench.scaling", "--job", stack, str(replicas), json.dumps(cfg), str(out)]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode == 0 and out.exists():
            return json.loads(out.read_text()), None
    lines = [line.strip() for line in p.stderr.splitlines() if line.strip()]
    return None, (lines[-1] if lines else f"the job's process exited {p.returncode} and wrote no times")


def rows_for(stack: str, times: dict[int, list[float] | None], errors: dict, per_replica_batch: int,
             device: str) -> list[dict]:
    """Rows of one stack: images/s and the efficiency against its 1-replica times, with the 95% interval."""
    framework, backend, _ = DP[stack]
    base = times.get(1)
    rows = []
    for r, t in times.items():
        row = dict(stack=stack, framework=framework, backend=backend, device=device, precision="fp32", scaling="weak", replicas=r,
                   per_replica_batch=per_replica_batch, batch_size=r * per_replica_batch,
                   collective=_per_device(COLLECTIVE, stack, device), bn_mode=_per_device(BN_MODE, stack, device),
                   job_id=f"{stack}/scaling/r{r}", status="ok" if t else "error", error=errors.get(r))
        if t:
            row["step_times_ms"] = ";".join(f"{1e3 * s:.4g}" for s in t)
            row["images_per_s"] = r * per_replica_batch / float(np.median(t))
            if base:
                row["efficiency"] = float(np.median(base) / np.median(t))
                row["efficiency_lo"], row["efficiency_hi"] = bootstrap_ratio(base, t)
            else:
                row["null_reason"] = "no 1-replica times to compare with"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling",
                                 description="Data-parallel scaling rows per stack (weak scaling: 1..R replicas at a "
                                             "fixed per-replica batch), and the parity across replicas (--parity).")
    ap.add_argument("--job", nargs=4, help=argparse.SUPPRESS)  # stack, replicas, cfg json, times file
    ap.add_argument("--models", default="resnet20_v1", help="models or fnmatch patterns, comma-separated (default: resnet20_v1)")
    ap.add_argument("--stacks", default=",".join(DP_STACKS),
                    help=f"data-parallel stacks, comma-separated (default: {','.join(DP_STACKS)})")
    ap.add_argument("--replicas", default="1,2", help="replica counts, comma-separated; 1 is always added (default: 1,2)")
    ap.add_argument("--per-replica-batch", type=int, default=32, help="examples per replica per step (default: 32)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per job (default: 20)")
    ap.add_argument("--input-size", type=int, default=None, help="image side override (small: a quick check)")
    ap.add_argument("--device", default="cpu", help="cpu (GPU replicas are not built yet; default: cpu)")
    ap.add_argument("--parity", action="store_true", help="also run bench.twins.dp_parity into dp_parity.json")
    ap.add_argument("--results-dir", default="results", help="results root (default: ./results)")
    args = ap.parse_args(argv)
    if args.job:
        stack, r, cfg, out = args.job
        from bench.results.writes import write_json_atomic
        write_json_atomic(Path(out), run_job(stack, int(r), **json.loads(cfg)))
        return 0
    stacks = [s for s in args.stacks.split(",") if s]
    try:
        replicas = sorted({int(r) for r in args.replicas.split(",")} | {1})
    except ValueError:
        print(f"error: --replicas {args.replicas!r} is not a comma-separated list of counts", file=sys.stderr)
        return 2
    problem = _input_problem(args, replicas) or check(stacks, replicas, args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import datetime

    from bench.results.run_state import new_run_dir, now, set_status
    from bench.results.writes import write_json_atomic
    stem = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S") + "-scaling"
    run_id, run_dir = new_run_dir(Path(args.results_dir), stem)
    write_json_atomic(run_dir / "run_meta.json", {  # a run folder bench.report renders (its Scaling section)
        "run_id": run_id, "argv": list(sys.argv[1:] if argv is None else argv), "suite": "scaling",
        "device": args.device, "gpu": args.device == "cuda", "status": "running", "status_cause": None,
        "status_at": now()})
    options = {} if args.input_size is None else {"input_size": args.input_size}
    failed = False
    for model in _models(args.models):
        cfg = dict(model=model, options=options, per_replica_batch=args.per_replica_batch, steps=args.steps)
        for st in stacks:
            times, errors = {}, {}
            for r in replicas:
                times[r], errors[r] = _spawn(st, r, cfg, args.device)
                if errors[r]:
                    failed = True
                    print(f"error: {model} {st} on {r} replica(s): {errors[r]}", file=sys.stderr, flush=True)
            for row in rows_for(st, times, errors, args.per_replica_batch, args.device):
                append_row(run_dir / FILES["scaling"], "scaling",
                           dict(row, run_id=run_id, model=model, input_size=args.input_size))
    if args.parity:
        from bench.twins.dp_parity import dp_parity
        write_json_atomic(run_dir / "dp_parity.json", dp_parity(replicas=max(replicas)))
    set_status(run_dir, "finished")
    print(f"results/{run_id}: {run_dir / FILES['scaling']}")
    return 1 if failed else 0  # as bench.run: a job that ended in error is a row with its error, and exit 1


def _models(patterns: str) -> list[str]:
    from bench.zoo import list_models
    return [m for p in patterns.split(",") if p for m in list_models(p)]


def _input_problem(args, replicas: list[int]) -> str | None:
    """One sentence for a value no job could run with (checked before any run folder is made), else None."""
    if min(replicas) < 1:
        return f"--replicas takes counts of 1 or more, got {args.replicas!r}"
    if args.per_replica_batch < 1 or args.steps < 1:
        return "--per-replica-batch and --steps take 1 or more"
    if not _models(args.models):
        return f"--models {args.models!r} matches no model (python -m bench.models lists them)"
    return None


if __name__ == "__main__":
    sys.exit(main())
