"""``python -m bench.run --suite NAME``: expand a suite into jobs, run them (each in a fresh process, or with
``--isolation reused`` a stack's throughput jobs in one long-lived worker), keep every row.

Results land in ``results/<run_id>/`` (``throughput.csv``, ``memory.csv``, ``epochs.csv``,
``nvml.csv``, ``run_meta.json``, ``logs/``); the report is rendered into ``reports/<run_id>/`` at the
end. A crashed, killed or timed-out job becomes a row with its error and the suite goes on;
``--resume RUN_ID`` skips jobs already done; Ctrl-C stops cleanly (resume later).

Examples::

    python -m bench.run --suite smoke                      # CPU-friendly, a few minutes
    python -m bench.run --suite throughput --models 'resnet*_v1' --frameworks torch --dry-run
    python -m bench.run --suite memory --models densenet_bc100_k12,densenet_bc100_k12_memeff
    python -m bench.run --resume 20261124-101500-smoke
    python -m bench.run --suite cifar10-full --executor ray --ray-address auto   # on a Ray cluster
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.core.env import gpu_available, run_meta, this_machine
from bench.core.helpfmt import RawWrappedFormatter
from bench.core.job import Job
from bench.core.roofs import cached as roofs_cached
from bench.core.roofs import for_run as roofs_for_run
from bench.core.stack_registry import FRAMEWORKS, KERAS_BACKENDS, STACKS
from bench.peaks import ensure as measure_roofs_once
from bench.pipeline import preflight, user_twins
from bench.pipeline.estimate import TOO_LONG_S, Estimate, estimate
from bench.pipeline.executors import ExecutorError, RunContext, add_args, carry_over, check_options, isolation, make_executor
from bench.pipeline.jobs import bisection_jobs, done_jobs
from bench.pipeline.preflight import EXIT_STATUS_HELP
from bench.pipeline.suites import (
    ALL_BACKEND_SUITES,
    SCALING,
    SUITES,
    Options,
    describe_jobs,
    expand,
    installed_keras_backends,
    unplanned_reason,
)
from bench.results.read import Unreadable, check_run, read_meta, repair, supersede
from bench.results.run_state import RunLock, RunLocked, describe_holder, holder, new_run_dir, now, set_status
from bench.results.schema import FILES
from bench.results.writes import ResultsWriteError, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def _backend_defaults() -> str:
    """--keras-backend's default per suite, as bench.pipeline.suites.keras_backends_for decides it."""
    from bench.pipeline.suites import DATA_PARALLEL_SUITES
    others = [s for s in SUITES if s not in ALL_BACKEND_SUITES and s not in DATA_PARALLEL_SUITES]
    return (f"all installed for {', '.join(ALL_BACKEND_SUITES)}; every installed one with a data-parallel path for "
            f"{', '.join(DATA_PARALLEL_SUITES)}; tensorflow for {', '.join(others)}")


def _replica_defaults() -> str:
    """--replicas' default on each device where scaling jobs run (bench.measures.scaling.DEVICES)."""
    said = []
    for dev, name in (("cpu", "a CPU"), ("cuda", "a GPU")):
        why = unplanned_reason("scaling", dev == "cuda")
        said.append(f"{','.join(map(str, SCALING[dev]['replicas']))} on {name}" if why is None else
                    f"none on {name} (GPU replicas are not built yet)")
    return ", ".join(said)


def build_parser() -> argparse.ArgumentParser:
    suites = "\n".join(f"  {k:<14} {v}" for k, v in SUITES.items())
    ap = argparse.ArgumentParser(
        prog="python -m bench.run", formatter_class=RawWrappedFormatter,
        description="Run a TwinBench suite: every job in a fresh process (or, --isolation reused, the "
                    "throughput jobs of one stack in one long-lived worker), every figure in results/<run_id>/*.csv, "
                    "every job's wall time and phases in results/<run_id>/jobs.csv.",
        epilog=f"suites:\n{suites}\n\nExamples:\n  python -m bench.run --suite smoke\n"
               "  python -m bench.run --suite cifar10-full --keras-backend jax\n"
               "  python -m bench.run --suite memory --models 'densenet*' --dry-run\n"
               "  python -m bench.run --resume RUN_ID\n\n" + EXIT_STATUS_HELP)
    ap.add_argument("--suite", choices=None, metavar="NAME", help="suite to run (see below)")
    ap.add_argument("--list", action="store_true", help="list suites and their jobs, then exit")
    ap.add_argument("--dry-run", action="store_true", help="print the plan with an estimated time, run nothing; the checks the real run "
                    "makes first run too, and refuse what it would refuse (same sentence, exit 2)")
    ap.add_argument("--models", metavar="M[,M...]", help="model names or fnmatch patterns (default: the suite's)")
    ap.add_argument("--frameworks", default="torch,keras", metavar="F[,F]", help="torch, keras (default: both)")
    ap.add_argument("--keras-backend", default=None, metavar="B[,B]|all",
                    help="backends of the Keras twins: tensorflow, jax, torch, a list (tensorflow,jax) or all (every "
                         "installed one); each Keras job runs in its own process on its backend (default: "
                         f"{_backend_defaults()})")
    ap.add_argument("--precision", metavar="P[,P]", help="fp32, bf16, fp16 (default: the suite's)")
    ap.add_argument("--batch-sizes", metavar="B[,B]", help="batch sizes (default: the suite's)")
    ap.add_argument("--epochs", type=int, metavar="N", help="override the recipe's epochs")
    ap.add_argument("--steps", type=int, metavar="N",
                    help="profiled steps of profile jobs, timed steps of scaling jobs (default: the suite's)")
    ap.add_argument("--replicas", metavar="R[,R]",
                    help="data-parallel replica counts of scaling jobs, 1 always added (default: the suite's: "
                         f"{_replica_defaults()}); more than the machine's devices is refused before any job")
    ap.add_argument("--strong", action="store_true",
                    help="scaling jobs at a fixed global batch split over the replicas (strong scaling; --batch-sizes "
                         "gives the global batch, default the suite's per-replica batch x the largest count), instead "
                         "of a fixed per-replica batch (weak scaling, the default)")
    ap.add_argument("--recipe", metavar="NAME", help="training recipe: paper, keras-example, slides, fast, smoke (default: the suite's)")
    ap.add_argument("--exec-mode", metavar="M[,M]",
                    help="execution modes: torch eager, compile (the model), step-compile (forward, backward and "
                         "optimizer compiled together; CUDA graphs on a GPU); keras jit, nojit (default: torch eager; "
                         "keras jit on a GPU and on JAX, nojit on a CPU). Each mode applies to its own framework's "
                         "jobs, training (train/epochs) included")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                    help="where jobs run (default: auto = the GPU if there is one)")
    ap.add_argument("--data-dir", metavar="DIR",
                    help="CIFAR-10 location (default: the first of $TWINBENCH_DATA_DIR, ./data, ~/.cache/twinbench holding "
                    "cifar-10-batches-py/; if none does, it is downloaded into --data-dir, else $TWINBENCH_DATA_DIR, else ./data)")
    ap.add_argument("--results", "--out", dest="out", default=str(ROOT / "results"), metavar="DIR",
                    help="results root (default: the checkout's results/), as in bench.report and bench.history; --out "
                         "is its older name here; the report goes to --reports, not beside the results")
    ap.add_argument("--reports", default=str(ROOT / "reports"), metavar="DIR",
                    help="reports root (default: reports/), as in bench.report and bench.history")
    ap.add_argument("--resume", metavar="RUN_ID", help="continue a run: skip the jobs it already finished")
    ap.add_argument("--job-timeout", type=float, default=None, metavar="S",
                    help="seconds before a job is killed (default: 1800; epochs jobs: none)")
    ap.add_argument("--no-report", action="store_true", help="do not render reports/<run_id>/ at the end")
    ap.add_argument("--no-roofs", action="store_true",
                    help="do not measure this machine's roofs before the jobs when none are cached (by default a run "
                         "with throughput or profile jobs measures them once, quick, for the libraries its jobs use, "
                         "and caches them: python -m bench.peaks); without roofs the report has no roofline and no "
                         "fraction of the roof. $TWINBENCH_NO_ROOFS=1 does the same")
    ap.add_argument("--find-max-batch", action="store_true",
                    help="memory suites: after the planned batches, find each sweep's largest batch that fits by "
                         "bisection (as timm's benchmark lowers the batch after an out-of-memory): a memory job at the "
                         "midpoint between the largest batch that fit (or 0) and the smallest out of memory, until the "
                         "gap closes or after 6 steps; each a normal job row, resumable")
    ap.add_argument("--repeats", type=int, default=1, metavar="N",
                    help="run each throughput job N times, each in a fresh process (job ids end in /r1../rN); the "
                         "report's intervals then carry the spread between processes (default: 1)")
    user_twins.add_args(ap)  # --twins FILE, --no-parity
    add_args(ap)  # --executor local|ray, --ray-address, ... (bench.pipeline.executors)
    return ap


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = build_parser()
    args = ap.parse_args(argv)
    _check(ap, args)
    return args


LIST_FLAGS = ("models", "frameworks", "precision", "batch_sizes", "exec_mode", "recipe", "replicas")  # --keras-backend: its own
PATH_FLAGS = ("data_dir", "out", "reports", "resume")


def _check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every flag checked before anything runs (``ap.error``: exit 2 with one sentence)."""
    for name in ("suite",) + LIST_FLAGS + PATH_FLAGS:  # given, but empty: a selection of nothing, or no place
        v = getattr(args, name)
        if v is not None and not (_csv(v) if name in LIST_FLAGS else v.strip()):
            flag = "--results (--out)" if name == "out" else f"--{name.replace('_', '-')}"
            ap.error(f"{flag} is empty ({v!r}): give a value, or leave the flag out for its default")
    if not (args.suite or args.list or args.resume):
        ap.error("give --suite NAME (or --list, or --resume RUN_ID)")
    problem = user_twins.load(args)  # before --models is matched: user twins are selected like built-in ones
    if problem:
        ap.error(problem)
    if args.suite and args.suite not in SUITES:
        ap.error(f"unknown suite {args.suite!r}; choose from: {', '.join(SUITES)}")
    _check_names(ap, args)
    _check_numbers(ap, args)
    for name in ("data_dir", "out", "reports"):  # jobs run from the checkout: a relative path means here, not there
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).expanduser().absolute()))
    if args.resume and ("/" in args.resume or args.resume in (".", "..")):
        ap.error(f"--resume takes a run id (a folder name under --out), got {args.resume!r}: give --out "
                 f"{Path(args.resume).parent} --resume {Path(args.resume).name}")


def _check_names(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bad = set(_csv(args.frameworks)) - set(FRAMEWORKS)
    if bad:
        ap.error(f"unknown framework(s) {sorted(bad)}; choose from {', '.join(FRAMEWORKS)}")
    if args.precision and set(_csv(args.precision)) - {"fp32", "bf16", "fp16"}:
        ap.error(f"--precision takes fp32, bf16, fp16; got {args.precision!r}")
    modes = {m: fw for fw in FRAMEWORKS for s in STACKS.values() if s.framework == fw for m in s.exec_modes}
    if args.exec_mode and set(_csv(args.exec_mode)) - set(modes):
        ap.error(f"unknown --exec-mode {sorted(set(_csv(args.exec_mode)) - set(modes))}; choose from {', '.join(modes)}")
    asked = _csv(args.frameworks)
    for m in _csv(args.exec_mode):
        if modes[m] not in asked:
            ap.error(f"--exec-mode {m} matches no job: it is a {modes[m]} mode and --frameworks is {','.join(asked)}; "
                     f"add {modes[m]} to --frameworks or drop {m}")
    if args.keras_backend and "keras" not in asked:  # harmless (the torch jobs still run), but say so
        print(f"note: --keras-backend {args.keras_backend} is ignored: --frameworks is {','.join(asked)} (no keras)",
              file=sys.stderr)
    args.keras_backends_t = _keras_backends(ap, args.keras_backend)
    if args.recipe:
        from bench.zoo.recipes import RECIPES
        if args.recipe not in RECIPES:
            ap.error(f"unknown recipe {args.recipe!r}; choose from {', '.join(RECIPES)}")


def _check_numbers(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.batch_sizes_t = _positive_ints(ap, args.batch_sizes, f"--batch-sizes must be integers, got {args.batch_sizes!r}",
                                        f"--batch-sizes must be positive, got {args.batch_sizes!r}")
    if args.epochs is not None and args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    args.replicas_t = _positive_ints(ap, args.replicas, f"--replicas takes comma-separated counts, got {args.replicas!r}",
                                     f"--replicas takes counts of 1 or more, got {args.replicas!r}")
    if getattr(args, "steps", None) is not None and args.steps < 1:
        ap.error(f"--steps must be >= 1, got {args.steps}")
    if args.job_timeout is not None and not (math.isfinite(args.job_timeout) and args.job_timeout > 0):
        ap.error(f"--job-timeout must be a positive number of seconds, got {args.job_timeout:g}; leave it out for "
                 "the default (1800 s; training: none)")
    problem = check_options(args)  # --ray-retries, --ray-jobs-per-device, --ray-address (bench.pipeline.executors)
    if problem:
        ap.error(problem)


def _positive_ints(ap: argparse.ArgumentParser, value: str | None, not_ints: str, not_positive: str
                   ) -> tuple[int, ...] | None:
    """A comma-separated flag of counts as a tuple (None: not given); ``ap.error`` with the sentence that fits."""
    if not value:
        return None
    try:
        counts = tuple(int(x) for x in _csv(value))
    except ValueError:
        ap.error(not_ints)
    if counts and min(counts) < 1:
        ap.error(not_positive)
    return counts


def _keras_backends(ap: argparse.ArgumentParser, arg: str | None) -> tuple[str, ...] | None:
    """--keras-backend as a tuple of backends (None: the suite's default)."""
    keras_backends_t = None
    if arg is not None:
        names = _csv(arg)
        if names == ["all"]:
            keras_backends_t = installed_keras_backends()
            if not keras_backends_t:
                ap.error("--keras-backend all: no Keras backend library is installed (tensorflow, jax or torch)")
        else:
            bad = [b for b in names if b not in KERAS_BACKENDS]
            if bad or not names:
                ap.error(f"unknown --keras-backend {', '.join(bad) or repr(arg)}; choose from "
                         f"{', '.join(KERAS_BACKENDS)} (a comma-separated list) or all")
            keras_backends_t = tuple(dict.fromkeys(names))
    return keras_backends_t


def _csv(s: str | None) -> list[str]:
    return [x.strip() for x in (s or "").split(",") if x.strip()]


def options_from(args: argparse.Namespace, gpu: bool) -> Options:
    return Options(models=tuple(_csv(args.models)) if args.models else None,
                   frameworks=tuple(_csv(args.frameworks)), keras_backends=getattr(args, "keras_backends_t", None),
                   precisions=tuple(_csv(args.precision)) if args.precision else None,
                   batch_sizes=args.batch_sizes_t, epochs=args.epochs, recipe=args.recipe,
                   exec_modes=tuple(_csv(args.exec_mode)) if args.exec_mode else None, gpu=gpu,
                   repeats=getattr(args, "repeats", 1) or 1, steps=getattr(args, "steps", None),
                   replicas=getattr(args, "replicas_t", None), strong=getattr(args, "strong", False))


def keras_meta(args: argparse.Namespace, jobs: list[Job]) -> dict:
    """run_meta's record of the Keras backends: the ones this run's Keras jobs use, and what was asked."""
    used = list(dict.fromkeys(j.keras_backend for j in jobs if j.keras_backend))
    return {"keras_backends": used, "keras_backend": ",".join(used) or None, "keras_backend_arg": args.keras_backend}


def print_plan(jobs: list[Job], done: set[str], file=None, est: Estimate | None = None) -> float:
    """The plan, one line per job with its estimate (measured on this machine, else the FLOP model: said which);
    returns the estimated seconds of the jobs still to do."""
    file = file or sys.stdout  # read now, not at import: a caller may have replaced sys.stdout since
    est = est or estimate(jobs, None)
    for j in jobs:
        s = est.seconds[j.job_id]
        mark = "done" if j.job_id in done else f"~{s:6.0f} s" + ("" if est.source[j.job_id] == "measured" else "*")
        print(f"  {mark:>11}  {j.job_id}", file=file)
    rest = [j.job_id for j in jobs if j.job_id not in done]
    total = est.total(rest)
    print(f"{len(jobs)} jobs ({len(jobs) - len(rest)} done); estimated time for the rest: {total / 60:.1f} min "
          f"({est.says(rest) if rest else 'nothing left'}{'; * = FLOP model' if any(est.source[j] == 'flops' for j in rest) else ''})",
          file=file)
    return total


def fitting_suites(args: argparse.Namespace, gpu: bool, hist) -> list[tuple[str, float]]:
    """(suite, estimated seconds) of the suites that fit the device (under ``FITS_S``), shortest first."""
    from bench.pipeline.estimate import FITS_S
    fits = []
    for name in SUITES:
        if name == args.suite:
            continue
        try:
            jobs = expand(name, options_from(args, gpu))
        except (ValueError, KeyError):
            continue
        total = estimate(jobs, None, history=hist).total([j.job_id for j in jobs]) if jobs else 0.0
        if jobs and total < FITS_S:
            fits.append((name, total))
    return sorted(fits, key=lambda x: x[1])


def _roof_libraries(args: argparse.Namespace, plan: Plan) -> tuple[str, ...]:
    """The libraries whose roofs this run measures before its jobs (none: cached already, --no-roofs, no throughput
    or profile job, or jobs on other machines)."""
    if args.no_roofs or os.environ.get("TWINBENCH_NO_ROOFS") == "1" or not plan.executor.runs_here:
        return ()
    if roofs_cached(this_machine(), "cuda" if plan.gpu else "cpu") is not None:
        return ()
    return tuple(dict.fromkeys(j.stack.backend for j in plan.jobs
                               if j.kind in ("throughput", "profile") and j.job_id not in plan.done))


def _dry_run(args: argparse.Namespace, plan: Plan) -> int:
    import statistics

    from bench.pipeline.estimate import load_history, run_overheads, too_long
    print(f"suite {args.suite} on {'GPU' if plan.gpu else 'CPU'}: run id would be {plan.run_id}")
    hist = load_history(Path(args.out), exclude=plan.run_id if plan.resumed else None)
    total = print_plan(plan.jobs, plan.done, est=estimate(plan.jobs, None, isolation(args, plan.gpu), history=hist))
    own = run_overheads(Path(args.out)).get(args.suite)
    if own and not plan.done:
        total += statistics.median(own[-3:])
        print(f"with the run's own time outside its jobs (plan, checks, summary, report: {statistics.median(own[-3:]):.0f} s "
              f"measured by earlier {args.suite} runs here): {total / 60:.1f} min")
    libs = _roof_libraries(args, plan)
    if libs:
        print(f"before the jobs, the run measures this machine's roofs once (quick: {', '.join(libs)}; cached for "
              "later runs; not in the estimate; --no-roofs skips it)")
    sentence = too_long(total, plan.gpu, args.suite, fitting_suites(args, plan.gpu, hist) if total > TOO_LONG_S else [])
    if sentence:
        print(sentence)
    return 0


def summary_table(out: Path) -> str:
    """One screen: per model x framework, the key figures of this run (its whole rows: bench.results.read)."""
    from bench.results.read import read_frame
    lines = []
    tp = out / FILES["throughput"]
    df = read_frame(tp, "throughput")
    if df is not None:
        ok = df[df.status == "ok"]
        if len(ok):
            piv = ok.pivot_table(index=["model", "batch_size", "precision"],
                                 columns=["framework", "exec_mode", "measurement", "input"],
                                 values="images_per_s", aggfunc="median")
            lines += ["throughput (images/s, median step):", piv.round(0).to_string(), ""]
    mem = out / FILES["memory"]
    df = read_frame(mem, "memory")
    if df is not None:
        cols = ["model", "framework", "backend", "batch_size", "depth", "status", "alloc_peak_mib", "peak_alloc_mib",
                "cpu_alloc_peak_mib",
                "saved_activations_mib", "state_plus_activations_mib", "null_reason"]
        show = df[[c for c in cols if c in df and (c != "cpu_alloc_peak_mib" or df[c].notna().any())]].copy()
        lines += ["memory:", show.to_string(index=False, max_colwidth=50), ""]
        from bench.measures.memory import largest_fit
        lines += [f"  {s}" for s in largest_fit(df)] + ([""] if largest_fit(df) else [])
    ep = out / FILES["epochs"]
    df = read_frame(ep, "epochs")
    if df is not None:
        ok = df[df.status == "ok"]
        if len(ok):
            last = ok.sort_values("epoch").groupby(["model", "framework", "backend", "recipe"]).tail(1)
            lines += ["training (last epoch):",
                      last[["model", "framework", "backend", "recipe", "epoch", "test_acc", "train_images_per_s"]]
                      .to_string(index=False), ""]
    prof = out / FILES["profile"]
    df = read_frame(prof, "profile")
    if df is not None:
        steps = df[(df.status == "ok") & (df.layer == "(step)")]
        if len(steps):
            lines += ["profile (step split: python -m bench.report; traces in traces/):",
                      steps[["model", "framework", "backend", "exec_mode", "batch_size", "profiled_step_ms", "unprofiled_step_ms",
                             "coverage", "fused_share"]].to_string(index=False), ""]
    failed = []
    for kind in ("throughput", "memory", "epochs", "profile"):
        p = out / FILES[kind]
        df = read_frame(p, kind)
        if df is not None:
            failed += [f"  {r.status:<8} {r.job_id}: {str(r.error)[:110]}"
                       for r in df[df.status.isin(["error", "timeout"])].itertuples()]  # oom, skipped: results
    if failed:
        lines += [f"{len(failed)} job(s) not ok:"] + failed
    return "\n".join(lines)


class Stop(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the running job is killed, finished rows are kept."""


def _signal_exit(e: KeyboardInterrupt) -> int:
    """The exit status of a run stopped by ``e``: 128 + the signal (143 for SIGTERM, 130 for Ctrl-C)."""
    return 128 + (signal.SIGTERM if isinstance(e, Stop) else signal.SIGINT)


def _stop_on_signals() -> None:
    """Ctrl-C / SIGINT and SIGTERM stop the suite cleanly, also where SIGINT was inherited as ignored
    (a process started in the background by a non-interactive shell, e.g. under ``timeout -s INT``)."""
    def on_term(signum, frame):
        raise Stop
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)


@dataclass
class Plan:
    """What a run will do: its id and folder, where its jobs run, the jobs and those already done."""

    run_id: str
    out: Path
    gpu: bool
    executor: object
    jobs: list[Job]
    done: set[str]
    resumed: bool = False


class Session:
    """What this process holds of a run: its lock, and whether it set the run's status (then it also says how
    the run ended). ``main`` releases it however ``_main`` ends."""

    def __init__(self) -> None:
        import time
        self.t0 = time.time()  # the run's own wall time (run_meta.json's run_wall_s: the estimates' run overhead)
        self.lock: RunLock | None = None
        self.out: Path | None = None
        self.started = False

    def take(self, out: Path, argv: list[str]) -> str | None:
        """Hold the run folder's lock; returns the error sentence when another live process holds it."""
        lock = RunLock(out)
        try:
            note = lock.acquire(argv)
        except RunLocked as e:
            return str(e)
        except OSError as e:
            return f"cannot lock the run {out} ({e.strerror or e}): fix its permissions"
        self.lock, self.out = lock, out
        if note:
            print(f"note: {note}", file=sys.stderr)
        return None

    def ended(self, status: str, cause: str | None = None) -> None:
        if self.started and self.out is not None:
            set_status(self.out, status, cause)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def _error(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return preflight.EXIT_BAD_INPUT


def _list(args: argparse.Namespace) -> int:
    """``--list``: every suite with its job count and what it runs (and the plan of ``--suite``)."""
    gpu = gpu_available() if args.device == "auto" else args.device == "cuda"
    for name, desc in SUITES.items():
        try:
            jobs = expand(name, options_from(args, gpu))
        except (ValueError, KeyError) as e:
            return _error(e.args[0] if e.args else str(e))
        print(f"{name:<14} {len(jobs):>4} jobs  {desc}\n{'':<25}runs: {describe_jobs(jobs)}")
        if args.suite == name:
            print_plan(jobs, set())
    return 0


def _resumed_args(args: argparse.Namespace, argv: list[str], session: Session) -> tuple[Path, dict] | int:
    """On ``--resume``: the run's folder and meta, its lock held (not for a dry run), its CSVs' schema checked,
    and ``args`` replaced by the run's original plan; or an exit status (2) with its error printed."""
    out = Path(args.out) / args.resume
    meta_path = out / "run_meta.json"
    if not meta_path.exists():
        return _error(f"no run to resume at {out} (run_meta.json missing)")
    try:
        meta = read_meta(out)
        original = list(meta["argv"])
        meta["run_id"], meta["gpu"]  # noqa: B018  (present)
    except Unreadable as e:
        return _error(str(e))
    except (KeyError, TypeError) as e:
        return _error(f"{meta_path} cannot be read ({type(e).__name__}: {e}): not a run that bench.run can resume")
    if not args.dry_run:
        problem = session.take(out, argv)
        if problem:
            return _error(problem)
    elif holder(out) is not None:
        print(f"note: the run {args.resume} is being written by another process ({describe_holder(holder(out) or {})})",
              file=sys.stderr)
    try:  # whole rows kept, damaged ones set aside (their jobs run again); a CSV that cannot be read: exit 2
        said = [] if args.dry_run and check_run(out) is not None else repair(out)
    except Unreadable as e:
        return _error(str(e))
    for sentence in said:
        print(f"note: {sentence}", file=sys.stderr)
    resumed = parse_args(original)  # the original plan, exactly ...
    carry_over(args, resumed)  # ... run by the executor this command names, if it names one
    for name in ("resume", "dry_run", "list"):  # what this command asks, not what the original one did
        setattr(resumed, name, getattr(args, name))
    resumed.no_report = resumed.no_report or args.no_report
    vars(args).update(vars(resumed))
    return out, meta


def _nothing_selected(args: argparse.Namespace, gpu: bool) -> str:
    """The sentence for a selection that leaves no job: how many jobs each selector alone leaves."""
    opts = options_from(args, gpu)
    base = Options(gpu=gpu)
    flags = {"models": "--models", "frameworks": "--frameworks", "keras_backends": "--keras-backend",
             "precisions": "--precision", "batch_sizes": "--batch-sizes", "exec_modes": "--exec-mode",
             "recipe": "--recipe", "epochs": "--epochs"}
    parts = []
    for field, flag in flags.items():
        value = getattr(opts, field)
        if value is None or value == getattr(base, field):
            continue
        try:
            n = len(expand(args.suite, dataclasses.replace(base, **{field: value})))
        except (ValueError, KeyError):
            n = 0
        parts.append(f"{flag} {','.join(map(str, value)) if isinstance(value, tuple) else value} alone: {n} jobs")
    try:
        total = len(expand(args.suite, base))
    except (ValueError, KeyError):
        total = 0
    return (f"the selection matches no job of suite {args.suite} ({total} jobs without narrowing; "
            + ("; ".join(parts) or "no selector given") + "): widen it (python -m bench.run --list, --dry-run)")


def _plan(args: argparse.Namespace, argv: list[str], session: Session) -> Plan | int:
    """The run's plan, or an exit status (2) with its one-sentence error already printed."""
    if args.resume:
        r = _resumed_args(args, argv, session)
        if isinstance(r, int):
            return r
        out, meta = r
        run_id, gpu = meta["run_id"], meta["gpu"]
    else:
        gpu = None  # where the jobs run decides (the executor's machines)
        run_id = datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{args.suite}"  # -2, -3 if taken (new_run_dir)
        out = Path(args.out) / run_id
    try:
        executor = make_executor(args)
    except ExecutorError as e:
        return _error(str(e))
    if gpu is None:
        gpu = executor.gpu_available() if args.device == "auto" else args.device == "cuda"
    if args.device == "cuda" and not executor.gpu_available():
        if not args.dry_run:
            return _error("--device cuda but no NVIDIA GPU is visible (NVML found none). Use --device cpu or auto.")
        print("note: no NVIDIA GPU here; this is the plan a GPU run would follow", file=sys.stderr)
    try:
        jobs = expand(args.suite, options_from(args, gpu))
    except (ValueError, KeyError) as e:
        return _error(e.args[0] if e.args else str(e))
    if not jobs:
        return _error(unplanned_reason(args.suite, gpu) or _nothing_selected(args, gpu))
    if getattr(args, "find_max_batch", False) and not any(j.kind == "memory" and j.depth is None for j in jobs):
        return _error(f"--find-max-batch bisects the batch sweeps of memory jobs, and suite {args.suite} plans none "
                      "(use --suite memory)")
    if (args.replicas or args.strong) and not any(j.replicas for j in jobs):  # harmless, but say so
        print(f"note: --replicas and --strong apply to scaling jobs; suite {args.suite} has none (--suite scaling)",
              file=sys.stderr)
    done, _ = done_jobs(out) if out.exists() and args.resume else (set(), set())
    return Plan(run_id, out, gpu, executor, jobs, done, resumed=bool(args.resume))


def _execute(args: argparse.Namespace, plan: Plan, session: Session) -> dict[str, int] | int:
    """Run the jobs still to do; their statuses counted, or the exit status of an interrupted run."""
    from tqdm.auto import tqdm
    _stop_on_signals()
    todo = [j for j in plan.jobs if j.job_id not in plan.done]
    print(f"run {plan.run_id}: {len(todo)} of {len(plan.jobs)} jobs to run -> {plan.out}", file=sys.stderr)
    counts: dict[str, int] = {}
    ctx = RunContext(plan.out, plan.run_id, args.data_dir, args.job_timeout, isolation(args, plan.gpu))
    from bench.pipeline.estimate import Remaining, load_history
    left = Remaining(estimate(todo, None, ctx.isolation, history=load_history(Path(args.out), exclude=plan.run_id)))
    # the bar's remaining time: each job's measured (else FLOP-model) estimate, scaled by how this run is going
    bar = tqdm(total=len(todo), unit="job", desc=args.suite, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} jobs [{elapsed}{postfix}")

    bar.set_postfix_str(f"{left.describe()}]")

    def on_start(job: Job) -> None:
        left.start(job.job_id)
        bar.set_postfix_str(f"{left.describe()}] {job.job_id[-60:]}")
    try:  # the job loop lives in bench.pipeline.executors (local: one after another here; ray: on a cluster)
        for round_jobs in _rounds(args, plan, todo, bar):
            with closing(plan.executor.run(round_jobs, ctx, on_start=on_start)) as finished:
                for job, status in finished:
                    counts[status] = counts.get(status, 0) + 1
                    left.done(job.job_id)
                    bar.update(1)
    except KeyboardInterrupt as e:
        bar.close()
        session.ended("interrupted", "SIGTERM" if isinstance(e, Stop) else "Ctrl-C (SIGINT)")
        print(f"\ninterrupted: finished rows are kept in {plan.out}. Continue with: python -m bench.run --resume "
              f"{plan.run_id}", file=sys.stderr)
        return _signal_exit(e)
    bar.close()
    return counts


def _rounds(args: argparse.Namespace, plan: Plan, todo: list[Job], bar) -> Iterator[list[Job]]:
    """The jobs to run, round by round: the plan's, then with ``--find-max-batch`` up to ``BISECT_STEPS`` rounds of
    bisection jobs (each sweep's next midpoint, from its rows so far: a resumed run goes on where it stopped)."""
    yield todo
    if not getattr(args, "find_max_batch", False):
        return
    from bench.measures.memory import BISECT_STEPS
    for _ in range(BISECT_STEPS):
        more = bisection_jobs(plan.out, plan.jobs)
        if not more:
            return
        bar.total += len(more)
        yield more


def _finish(args: argparse.Namespace, plan: Plan, counts: dict[str, int], session: Session) -> int:
    """The summary, the report, and the run's exit status."""
    session.ended("finished")
    print(summary_table(plan.out))
    print(f"\nresults: {plan.out}  ({', '.join(f'{v} {k}' for k, v in sorted(counts.items())) or 'nothing new'})")
    status = preflight.exit_status(counts)
    if not args.no_report:
        try:
            from bench.report import render
            path = render(plan.out, Path(args.reports) / plan.run_id)
            print(f"report:  {path}")
        except ImportError as e:
            print(f"report not rendered ({e}); install the [report] extra", file=sys.stderr)
        except OSError as e:
            print(f"error: report not rendered ({e}); free space, then: python -m bench.report {plan.out}", file=sys.stderr)
            status = status or preflight.EXIT_WRITE_FAILED
    if not plan.resumed:
        _record_wall(plan.out, session)
    if status == preflight.EXIT_JOBS_FAILED:
        print(f"exit status 1: {counts.get('error', 0) + counts.get('timeout', 0)} job(s) ended in error or timeout "
              f"(see above); {preflight.resume_command(plan.out)} runs them again", file=sys.stderr)
    return status


def _record_wall(out: Path, session: Session) -> None:
    """run_meta.json's ``run_wall_s``: this command's wall time, its report included (a later --dry-run adds the
    part outside the jobs to its estimate: ``bench.pipeline.estimate.run_overheads``)."""
    import time
    try:
        meta = read_meta(out)
        meta["run_wall_s"] = round(time.time() - session.t0, 2)
        write_json_atomic(out / "run_meta.json", meta)
    except (OSError, ValueError):  # Unreadable is a ValueError: a damaged meta keeps no wall time
        pass


def _start(args: argparse.Namespace, argv: list[str], plan: Plan, session: Session) -> int | None:
    """Claim the run folder (a new run: a fresh id, never another run's) and hold it; mark it running."""
    if plan.resumed:
        session.started = set_status(plan.out, "running", None, resumed_at=now())
        try:  # one row per job: the jobs run again leave their earlier attempt's rows in <file>.attempts
            said = supersede(plan.out, {j.job_id for j in plan.jobs if j.job_id not in plan.done})
        except Unreadable as e:
            return _error(str(e))
        for sentence in said:
            print(f"note: {sentence}", file=sys.stderr)
        return None
    plan.run_id, plan.out = new_run_dir(Path(args.out), plan.run_id)
    problem = session.take(plan.out, argv)
    if problem:
        return _error(problem)
    libs = _roof_libraries(args, plan)
    if libs:
        measure_roofs_once("cuda" if plan.gpu else "cpu", libs)
    roofs = roofs_for_run("cuda" if plan.gpu else "cpu")
    if roofs.get("null_reason") and any(j.kind in ("throughput", "profile") for j in plan.jobs):
        print(f"note: {roofs['null_reason']}: the report then leaves out how far each job is from the machine's "
              "roofs", file=sys.stderr)
    write_json_atomic(plan.out / "run_meta.json", {
        "run_id": plan.run_id, "argv": argv, "gpu": plan.gpu, "status": "running", "status_cause": None,
        "status_at": now(),
        **run_meta(argv, args.suite, {"device": "cuda" if plan.gpu else "cpu", "isolation": isolation(args, plan.gpu),
                                      **keras_meta(args, plan.jobs), "roofs": roofs})})
    session.started = True
    return None


def _main(argv: list[str] | None, session: Session) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.list:
        return _list(args)
    plan = _plan(args, argv, session)
    if isinstance(plan, int):
        return plan
    if preflight.check([j for j in plan.jobs if j.job_id not in plan.done], plan.out, args.data_dir,
                       None if args.no_report else Path(args.reports),
                       gpu_visible=(lambda: True) if args.dry_run else plan.executor.gpu_available,  # a GPU plan shown
                       here=plan.executor.runs_here, dry_run=args.dry_run):
        return preflight.EXIT_BAD_INPUT  # a dry run refuses what the real run would, with its sentences
    if args.dry_run:
        return _dry_run(args, plan)
    plan.jobs, refused = user_twins.prove_jobs(args, plan.jobs)  # a user twin: proven one network, or refused
    if refused:
        print(refused, file=sys.stderr)
        return preflight.EXIT_BAD_INPUT
    node_problems = plan.executor.check_nodes([j for j in plan.jobs if j.job_id not in plan.done], args.data_dir)
    for p in node_problems:  # a Ray cluster: every node's packages and data, before any job
        print(f"error: {p}", file=sys.stderr)
    if node_problems:
        return preflight.EXIT_BAD_INPUT
    if not plan.gpu:
        print("note: no GPU found, running on the CPU; GPU-only figures (the GPU allocator peak over timed steps, "
              "NVML) are null with a reason in their rows.", file=sys.stderr)
    failed = _start(args, argv, plan, session)
    if failed is not None:
        return failed
    counts = _execute(args, plan, session)
    if isinstance(counts, int):
        return counts
    try:
        return _finish(args, plan, counts, session)
    except KeyboardInterrupt as e:  # every job had finished: only the summary or the report is missing
        print(f"\ninterrupted while writing the summary and the report: every job finished, its rows are in "
              f"{plan.out}. Render the report with: python -m bench.report {plan.out}", file=sys.stderr)
        return _signal_exit(e)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.run``; returns the exit status (see ``--help`` and ``bench.pipeline.preflight``).

    While it writes a run it holds the run's lock (``bench.results.run_state``) and records in run_meta.json
    how the run stands: running, finished, interrupted (Ctrl-C, SIGTERM, a full disk) or failed."""
    session = Session()
    try:
        return _main(argv, session)
    except ResultsWriteError as e:  # disk full / not writable while the suite ran: every CSV is intact
        session.ended("interrupted", f"results could not be written (full disk or no permission): {e}")
        return preflight.write_failed(e)
    except KeyboardInterrupt:
        session.ended("interrupted", "Ctrl-C (SIGINT)")
        raise
    except Exception as e:
        session.ended("failed", f"{type(e).__name__}: {str(e)[:200]}")
        raise
    finally:
        session.release()


if __name__ == "__main__":
    sys.exit(main())
