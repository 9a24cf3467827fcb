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

The same jobs run inside ``bench.run --suite scaling`` (a replica count is one more field of a job,
``Job.replicas``); this command adds ``--parity`` and a quick ``--input-size``. The measure itself is
``bench.measures.scaling``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.measures.scaling import DP_STACKS, check, rows_for
from bench.measures.scaling import spawn as _spawn
from bench.results.schema import FILES, append_row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scaling",
                                 description="Data-parallel scaling rows per stack (weak scaling: 1..R replicas at a "
                                             "fixed per-replica batch), and the parity across replicas (--parity).")
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
            times, errors, envs = {}, {}, {}
            for r in replicas:
                times[r], errors[r], envs[r] = _spawn(st, r, cfg, args.device)
                if errors[r]:
                    failed = True
                    print(f"error: {model} {st} on {r} replica(s): {errors[r]}", file=sys.stderr, flush=True)
            for row in rows_for(st, times, errors, args.per_replica_batch, args.device):
                append_row(run_dir / FILES["scaling"], "scaling",
                           dict(row, **envs.get(row["replicas"], {}), run_id=run_id, model=model,
                                input_size=args.input_size))
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
