"""Child process of ``bench.run``: runs one job's measure and appends its rows to ``results/<run_id>/*.csv``.

``python -m bench.pipeline.worker --out DIR --run-id ID --job JSON``. The stack's process environment
(``StackInfo.process_env``: KERAS_BACKEND; ``StackInfo.job_env``: what one kind of job alone gets, e.g.
TensorFlow's BFC CPU allocator for CPU memory jobs), preallocation off and CPU-only when asked are set here
*before* any framework import, which is why each job gets its own process (as timm's bulk_runner does), or, with
``--serve`` (``--isolation reused``, ``bench.pipeline.pool``), one process runs the throughput jobs of one stack
and environment one after another. Each phase of a job's time is named (``bench.core.phases``) and left
for the parent's ``jobs.csv`` row.
The measure is ``bench.measures.driver(job.kind)``. A Python exception becomes a row with
``status=error`` (or ``oom``); a crash that leaves no row is recorded by the parent.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from bench.core import phases
from bench.core.job import Job
from bench.core.stack_registry import PREALLOC_OFF
from bench.results.schema import FILES, append_row


def configure_env(job: Job) -> None:
    """The job's process environment, before any framework is imported."""
    import importlib

    from bench.core.hygiene import pin_malloc
    pin_malloc()  # before anything large is allocated: the same allocator regime in every job's process
    os.environ.update(PREALLOC_OFF)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if job.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    env, drop = job.stack.env_for(job.kind, job.device)  # e.g. TF's BFC CPU allocator for CPU memory jobs only
    for name in drop:
        os.environ.pop(name, None)
    os.environ.update(env)
    for module in job.stack.preimport:  # e.g. Keras wants torch imported first on its torch backend
        importlib.import_module(module)


def preload(job: Job) -> None:
    """The stack's framework and the job's measure imported now, in the ``start`` phase (process start and imports),
    so that ``build`` is the build alone; a reused worker pays them once. A missing package is left to the
    measure, which records it in the job's row."""
    import importlib

    from bench.measures import OWN_PROCESS_KINDS
    if job.kind in OWN_PROCESS_KINDS:  # its measure starts the stack's processes itself
        return
    for module in job.stack.packages:
        try:
            importlib.import_module(module)
        except ImportError:
            return
    from bench.measures import driver
    from bench.stacks import get_stack
    driver(job.kind)
    get_stack(job.framework, job.keras_backend)


def _die_with_parent() -> None:
    """Linux: this job dies with its ``bench.run`` (``kill -9`` of the run leaves no orphan that would write a
    row after a ``--resume`` has started the same job again). Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal
        ppid = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != ppid:  # the parent died before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass


def _first_time(run_id: str, job_id: str) -> bool:
    """True once per (run, job): the marker lives in $TWINBENCH_FAULT_DIR (default: the temp folder)."""
    import hashlib
    import tempfile
    d = os.environ.get("TWINBENCH_FAULT_DIR") or tempfile.gettempdir()
    marker = Path(d) / f"twinbench-crash-once-{hashlib.sha1(f'{run_id}/{job_id}'.encode()).hexdigest()[:16]}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline.worker", description="Run one TwinBench job (internal).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--job", required=True, help="the job as JSON (bench.core.job.Job fields)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--spawned-at", type=float, default=None, help="the parent's wall clock at spawn (phase times)")
    ap.add_argument("--serve", action="store_true",
                    help="reused isolation: configured for --job's stack, run jobs read from stdin (bench.pipeline.pool)")
    args = ap.parse_args(argv)
    phases.CLOCK.reset(args.spawned_at)  # "start": from the spawn, interpreter start and imports included
    job = Job(**json.loads(args.job))
    out = Path(args.out)
    _die_with_parent()
    configure_env(job)
    preload(job)
    if args.serve:
        return serve(out, args.run_id, args.data_dir)
    return run_one(job, out, args.run_id, args.data_dir)


def _load_data_once() -> None:
    """Reused isolation: CIFAR-10 is read once per worker, not once per real-input job (``bench.data.load_cifar10``
    memoised in this process by its arguments; its consumers copy what they change: ``normalize_padded``)."""
    import functools

    import bench.data
    bench.data.load_cifar10 = functools.lru_cache(maxsize=2)(bench.data.load_cifar10)


def _between_jobs(job: Job) -> None:
    """After a job in a reused worker: the stack drops the job's global state (``Stack.between_jobs``), then the
    garbage is collected, so the next job starts from what a fresh process would hold (imports aside)."""
    import gc
    try:
        from bench.stacks import get_stack
        get_stack(job.framework, job.keras_backend).between_jobs()
    except ImportError:
        pass
    gc.collect()


def serve(out: Path, run_id: str, data_dir: str | None) -> int:
    """Reused isolation: one request per stdin line ({"job", "t0", "log"}), each job run as a fresh worker runs it
    with stdout and stderr in its log, then ``done <exit status>`` on the parent's pipe. Ends at end of input."""
    answer = os.fdopen(os.dup(1), "w", buffering=1)
    _load_data_once()
    for line in sys.stdin:
        req = json.loads(line)
        job = Job(**req["job"])
        phases.CLOCK.reset(req["t0"])  # "start": from the hand-over (the first job: from the worker's spawn)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(req["log"], "a") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        rc = run_one(job, out, run_id, data_dir)
        _between_jobs(job)
        sys.stdout.flush()
        sys.stderr.flush()
        answer.write(f"done {rc}\n")
        if rc == 3:  # the results could not be written: the parent stops the suite
            return rc
    return 0


def run_one(job: Job, out: Path, run_id: str, data_dir: str | None) -> int:
    """Run one job in this (configured) process: its rows, then its phase times for the parent."""
    row = job.base_row(run_id)
    # test hook: TWINBENCH_INJECT_FAULT="crash:<job_id>;oom:<job_id>;cpu-oom:<job_id>;hang:<job_id>;crash-once:<job_id>"
    # (enospc:<file>: bench.results.writes); oom-above:<N>: every memory job with a batch above N is a CPU out-of-memory
    # (a machine whose memory holds batch N, for --find-max-batch)
    faults = {tuple(f.split(":", 1)[::-1]) for f in os.environ.get("TWINBENCH_INJECT_FAULT", "").split(";") if ":" in f}
    from bench.results.writes import ResultsWriteError
    try:
        return _run(job, out, row, data_dir, faults)
    except ResultsWriteError as e:  # disk full / not writable: say so (the parent stops the suite), no traceback
        print(f"error: {e}", file=sys.stderr)
        return 3
    finally:
        try:
            phases.dump(phases.path_for(out, job.job_id))
        except OSError:
            pass  # no phase times: the parent's jobs.csv row says so


def _run(job: Job, out: Path, row: dict, data_dir: str | None, faults: set) -> int:
    try:
        if (job.job_id, "crash") in faults:
            os._exit(3)  # dies like a segfault would: no row, the parent records it
        if (job.job_id, "hang") in faults:
            import time
            print("injected hang (TWINBENCH_INJECT_FAULT)", file=sys.stderr, flush=True)
            time.sleep(3600)  # a job that is still running when the whole run is killed
        if (job.job_id, "crash-once") in faults and _first_time(row["run_id"], job.job_id):
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-job (OOM killer, a lost node), the first time only: a retry runs
        if (job.job_id, "oom") in faults:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by TWINBENCH_INJECT_FAULT)")
        if (job.job_id, "cpu-oom") in faults or _oom_above(job, faults):
            _cpu_allocator_failure()
        from bench.measures import driver
        driver(job.kind)(job, out, row, data_dir)
    except Exception as e:
        from bench.results.writes import ResultsWriteError
        if isinstance(e, ResultsWriteError):
            raise
        from bench.data import DataError
        from bench.stacks.base import is_oom
        status = "oom" if is_oom(e) else "error"
        msg = f"{type(e).__name__}: {e}" if isinstance(e, DataError) else f"{type(e).__name__}: {str(e)[:500]}"
        if not isinstance(e, DataError):
            traceback.print_exc()
        extra = {"oom": status == "oom"} if job.kind == "memory" else {}
        phases.enter("write")
        append_row(out / FILES[job.kind], job.kind, {**row, **extra, "status": status, "error": msg,
                                                     "null_reason": "job failed" if status == "error" else
                                                     "out of memory at this batch size"})
        return 0 if status == "oom" else 1
    return 0


def _oom_above(job: Job, faults: set) -> bool:
    """``oom-above:<N>`` of TWINBENCH_INJECT_FAULT: a memory job whose batch is above N."""
    return job.kind == "memory" and any(name == "oom-above" and job.batch_size > int(n) for n, name in faults)


def _cpu_allocator_failure() -> None:
    """A real CPU allocator failure, cheaply: torch's DefaultCPUAllocator asked for 1 PiB (it raises at once, on
    every machine, whatever its memory; ``cpu-oom:<job_id>`` of TWINBENCH_INJECT_FAULT)."""
    import torch
    torch.empty(2**50, dtype=torch.uint8)


def exit_now(rc: int) -> None:
    """End this worker without the interpreter's teardown, once its rows, phase times and logs are written.

    A job's rows are each one write + fsync (``bench.results.writes``), so nothing is left to flush but stdio; the
    teardown (every module's and framework's finalisers: TensorFlow's, torch's) was most of a fresh job's ``write``
    phase (docs/measures/harness.md). ``TWINBENCH_WORKER_TEARDOWN=1``, or a tracer
    or coverage in the process, keeps the normal exit."""
    if os.environ.get("TWINBENCH_WORKER_TEARDOWN") == "1" or sys.gettrace() is not None or "coverage" in sys.modules:
        sys.exit(rc)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(rc)


if __name__ == "__main__":
    exit_now(main())
