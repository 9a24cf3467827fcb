"""Reused isolation (``bench.run --isolation reused``): a long-lived worker process per stack (framework, backend,
device) runs that stack's throughput jobs one after another, so that process start, framework imports and the
measure's imports are paid once per stack instead of once per job (timm's ``benchmark.py`` sweeps batch sizes
inside one process the same way). Memory, training and profile jobs never reuse a process: an allocator peak, a
training run and a profiler's setup (``REUSABLE``) start from a clean one.

The worker is ``python -m bench.pipeline.worker --serve``: it reads one request per line on stdin (the job, the
time it was handed over, its log file), points its stdout and stderr at the job's log, runs the job exactly as a
fresh worker does (``bench.pipeline.worker.run_one``), and answers ``done <exit status>`` on its own copy of
stdout. A job that outlives its timeout kills the worker (the next job of the stack starts a new one); a worker
that dies without answering is recorded as a fresh one would be (``bench.pipeline.jobs.conclude``).
Every such job's ``jobs.csv`` row says ``isolation=reused`` and how many jobs its worker had run before it.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from bench.core.job import Job
from bench.pipeline.jobs import ROOT, _kill, conclude, record_failure, record_job, rows_for

# figures that need no fresh process. Memory peaks and training runs do; so do profiles: Keras on TensorFlow sets
# one inter-op thread before TensorFlow starts so that op events tile the step (bench.stacks.keras.tf_trace.serial_ops),
# and in a worker that ran throughput jobs first its attributed time came to 1.36 of the step, 0.90 fresh (a rough
# check on a loaded 2-core CPU, resnet20_v1 batch 8).
REUSABLE = ("throughput",)


def stack_key(job: Job) -> tuple:
    """The worker a reusable job goes to: its stack on its device, with the process environment its kind of job gets
    (``StackInfo.env_for``: jobs that need another environment never share a process); a repeat round keeps its
    own workers."""
    env, drop = job.stack.env_for(job.kind, job.device)
    return (job.repeat, job.framework, job.keras_backend, job.device, tuple(sorted(env.items())), drop)


def reused_order(todo: list[Job]) -> list[Job]:
    """The jobs in plan order, except that the reusable jobs of one stack (and repeat round) run together, at the
    place of the first of them: one worker's jobs back to back, that worker gone before the next stack's."""
    groups: dict[tuple, list[Job]] = {}
    order: list = []
    for j in todo:
        if j.kind in REUSABLE:
            key = stack_key(j)
            if key not in groups:
                groups[key] = []
                order.append(key)
            groups[key].append(j)
        else:
            order.append(j)
    return [j for item in order for j in (groups[item] if isinstance(item, tuple) else [item])]


class Worker:
    """One long-lived worker process of one stack; ``jobs`` it has run so far."""

    def __init__(self, first: Job, out: Path, run_id: str, data_dir: str | None, spawned: float, log_path: Path) -> None:
        cmd = [sys.executable, "-m", "bench.pipeline.worker", "--serve", "--out", str(out), "--run-id", run_id,
               "--job", json.dumps(first.to_dict()), "--spawned-at", repr(spawned)] + (
            ["--data-dir", data_dir] if data_dir else [])
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.key, self.jobs = stack_key(first), 0
        with open(log_path, "a") as log:  # what the worker says before its first job (imports) goes to that job's log
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                         env=env, cwd=ROOT, start_new_session=True)

    def run(self, job: Job, t0: float, log_path: Path, timeout: float | None) -> int | None:
        """Hand ``job`` over; its exit status, None when the worker died, or raise TimeoutError."""
        try:
            self.proc.stdin.write((json.dumps({"job": job.to_dict(), "t0": t0, "log": str(log_path)}) + "\n").encode())
            self.proc.stdin.flush()
        except OSError:  # BrokenPipeError: it died before it read the job
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.proc.stdout], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                return None
            line += chunk
        self.jobs += 1
        return int(line.split()[1])

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            _kill(self.proc)


class WorkerPool:
    """At most one live worker: the stack of the job at hand; another stack's job closes it first."""

    def __init__(self, out: Path, run_id: str, data_dir: str | None) -> None:
        self.out, self.run_id, self.data_dir = out, run_id, data_dir
        self.worker: Worker | None = None

    def run_job(self, job: Job, timeout: float | None) -> tuple[str, str]:
        """Run a reusable job in its stack's worker (started when there is none); (status, message) as
        ``bench.pipeline.jobs.run_job`` returns them, and its ``jobs.csv`` row."""
        from bench.core import phases
        try:
            return self._run_job(job, timeout)
        finally:
            phases.path_for(self.out, job.job_id).unlink(missing_ok=True)  # read by record_job, or not (interrupted)

    def _run_job(self, job: Job, timeout: float | None) -> tuple[str, str]:
        log_path = self.out / "logs" / (job.job_id.replace("/", "_") + ".log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("")  # a job run again (--resume) starts its log afresh, as a fresh worker's does
        t0 = time.time()
        if self.worker is not None and self.worker.proc.poll() is not None:
            self.worker = None  # it ended between jobs: this job gets a new one
        if self.worker is not None and self.worker.key != stack_key(job):
            self.close()
        if self.worker is None:
            self.worker = Worker(job, self.out, self.run_id, self.data_dir, t0, log_path)
        before, ran_before = rows_for(self.out, job), self.worker.jobs
        try:
            rc = self.worker.run(job, t0, log_path, timeout)
        except TimeoutError:
            _kill(self.worker.proc)
            self.worker = None
            record_failure(job, self.out, self.run_id, "timeout", f"killed after {timeout:.0f} s (--job-timeout)")
            record_job(job, self.out, self.run_id, "timeout", t0, time.time(), "reused", ran_before)
            return "timeout", f"timed out after {timeout:.0f} s"
        except KeyboardInterrupt:
            self.close(kill=True)
            raise
        if rc is None:  # died mid-job: the next job of this stack gets a new worker
            rc = self.worker.proc.wait()
            self.worker = None
        status, msg = conclude(job, self.out, self.run_id, rc, before, log_path)
        record_job(job, self.out, self.run_id, status, t0, time.time(), "reused", ran_before)
        return status, msg

    def close(self, kill: bool = False) -> None:
        if self.worker is not None:
            if kill:
                _kill(self.worker.proc)
            else:
                self.worker.close()
            self.worker = None
