"""Running one job: a child process (``python -m bench.pipeline.worker``), its log, its timeout, and the
rows that say how it ended; and reading back which jobs of a run are done (``--resume``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.core.job import Job
from bench.results.schema import FILES, KINDS, append_row

ROOT = Path(__file__).resolve().parents[2]


def done_jobs(out: Path) -> tuple[set[str], dict[str, int]]:
    """(job ids with a final row: ok/oom/skipped, {memory sweep that hit an OOM: its smallest batch out of memory})
    from existing CSVs."""
    from bench.results.read import read_rows  # whole rows only: a damaged row's job is not done
    done, oom_sweeps = set(), {}
    epochs: dict[str, tuple[set[str], str]] = {}  # a training job: its epochs with an ok row, its epoch count
    for kind in KINDS:
        path = out / FILES[kind]
        if kind in ("nvml", "jobs") or not path.exists():
            continue
        for row in read_rows(path, kind):
            if kind == "epochs":
                if row["status"] == "ok" and row["epoch"]:
                    epochs.setdefault(row["job_id"], (set(), row["epochs_total"]))[0].add(row["epoch"])
                continue
            if row["status"] in ("ok", "oom", "skipped"):
                done.add(row["job_id"])
            if row["status"] == "oom":
                tag, b = sweep_tag(row["job_id"]), batch_of(row) or 0  # unknown: the whole sweep is swept
                oom_sweeps[tag] = min(b, oom_sweeps.get(tag, b))
    for job_id, (have, total) in epochs.items():  # done with every epoch's row: a missing one reruns the job
        if total and have >= {str(e) for e in range(1, int(total) + 1)}:
            done.add(job_id)
    return done, oom_sweeps


def batch_of(row: dict) -> int | None:
    """A row's batch size (None: empty or not a number)."""
    try:
        return int(float(row.get("batch_size") or ""))
    except (TypeError, ValueError):
        return None


def sweep_tag(job_id: str) -> str:
    """A job id without its batch size: the jobs of one memory sweep share it."""
    parts = job_id.split("/")
    return "/".join(parts[:4] + parts[5:])


def bisection_jobs(out: Path, planned: list[Job]) -> list[Job]:
    """``--find-max-batch``: one memory job per batch sweep of ``planned`` whose rows in ``out`` leave a gap between
    the largest batch that fit and the smallest out of memory (``bench.measures.memory.next_batch``), at its
    midpoint; [] when every gap is closed. Each is a normal job (its row kept, resumed, reported)."""
    import dataclasses

    from bench.measures.memory import next_batch
    from bench.results.read import read_rows
    path = out / FILES["memory"]
    tried: dict[str, dict[int, str]] = {}
    for row in read_rows(path, "memory") if path.exists() else ():
        if batch_of(row):
            tried.setdefault(sweep_tag(row["job_id"]), {})[batch_of(row)] = row["status"]
    sweeps = {sweep_tag(j.job_id): j for j in planned if j.kind == "memory" and j.depth is None}
    nxt = {tag: next_batch(tried.get(tag, {})) for tag in sweeps}
    return [dataclasses.replace(sweeps[tag], batch_size=b) for tag, b in nxt.items() if b is not None]


def run_job(job: Job, out: Path, run_id: str, data_dir: str | None, timeout: float | None) -> tuple[str, str]:
    """Run one job in a child process; returns (status, message). Records crashes and timeouts itself."""
    log_path = out / "logs" / (job.job_id.replace("/", "_") + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spawned = time.time()
    cmd = [sys.executable, "-m", "bench.pipeline.worker", "--out", str(out), "--run-id", run_id,
           "--job", json.dumps(job.to_dict()), "--spawned-at", repr(spawned)] + (["--data-dir", data_dir] if data_dir else [])
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = _rows_for(out, job)
    from bench.core import phases
    try:
        status, msg = _spawn(job, out, run_id, cmd, env, log_path, timeout, before)
        record_job(job, out, run_id, status, spawned, time.time(), "fresh", 0)
    finally:
        phases.path_for(out, job.job_id).unlink(missing_ok=True)  # read by record_job, or not (interrupted, disk full)
    return status, msg


def _spawn(job: Job, out: Path, run_id: str, cmd: list[str], env: dict, log_path: Path, timeout: float | None,
           before: int) -> tuple[str, str]:
    with open(log_path, "w") as log:
        # training jobs show their per-epoch progress bars on the terminal; other jobs log to a file
        stderr = None if (job.kind == "epochs" and sys.stderr.isatty()) else log
        proc = subprocess.Popen(cmd, stdout=log, stderr=stderr, env=env, cwd=ROOT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            record_failure(job, out, run_id, "timeout", f"killed after {timeout:.0f} s (--job-timeout)")
            return "timeout", f"timed out after {timeout:.0f} s"
        except KeyboardInterrupt:
            _kill(proc)
            raise
    return conclude(job, out, run_id, rc, before, log_path)


def conclude(job: Job, out: Path, run_id: str, rc: int, before: int, log_path: Path) -> tuple[str, str]:
    """(status, message) of a job whose worker returned ``rc`` (or died: negative); records a death without a row."""
    last = _last_status(out, job) if _rows_for(out, job) > before else None
    if rc == 0 and last is not None:
        return last, "exit 0"
    if rc != 0 and last in ("error", "oom"):  # the worker recorded its own failure
        return last, f"exit {rc}"
    # died without saying why (segfault, kill, os._exit), possibly after some epoch rows
    tail = log_path.read_text(errors="replace")[-400:].strip().replace("\n", " | ")
    msg = f"worker died with exit code {rc} and wrote no error row; log {log_path.name}: {tail}"
    record_failure(job, out, run_id, "error", msg)
    return "error", msg


def rows_for(out: Path, job: Job) -> int:
    """Rows of ``job`` in its CSV so far (a worker's outcome is read from the rows it added)."""
    return _rows_for(out, job)


def _rows_for(out: Path, job: Job) -> int:
    path = out / FILES[job.kind]
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if f",{job.job_id}," in line)


def _last_status(out: Path, job: Job) -> str | None:
    from bench.results.read import read_rows
    rows = [r for r in read_rows(out / FILES[job.kind], job.kind) if r["job_id"] == job.job_id]
    return rows[-1]["status"] if rows else None


def record_failure(job: Job, out: Path, run_id: str, status: str, msg: str) -> None:
    """An error/timeout row for a job that could not write its own."""
    row = {**job.base_row(run_id), "status": status, "error": msg, "null_reason": "job failed"}
    if job.kind == "memory":
        row["oom"] = False
    append_row(out / FILES[job.kind], job.kind, row)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def record_job(job: Job, out: Path, run_id: str, status: str, t0: float, t1: float, isolation: str,
               worker_jobs: int) -> None:
    """The job's ``jobs.csv`` row: wall time from ``t0`` (spawn, or hand-over to a reused worker) to ``t1`` (its rows
    written and, fresh, its process gone), and each phase its worker measured (``bench.core.phases``); the time
    between the worker's last phase and ``t1`` (the process's exit) counts as write. A worker that left no phases
    (killed, crashed before the measure) gives the wall time alone."""
    from bench.core import phases
    path = phases.path_for(out, job.job_id)
    got = phases.load(path)
    from bench.results.schema import columns
    row = {k: v for k, v in job.base_row(run_id).items() if k in columns("jobs")}
    row["exec_mode"] = job.exec_mode or job.stack.default_modes.get(job.device)
    row.update({"job_kind": job.kind, "isolation": isolation, "worker_jobs": worker_jobs,
           "wall_s": t1 - t0, "status": status})
    if got is not None and abs(got["t0"] - t0) < 1e-3:
        spent = dict(got["phases"])
        spent["write"] = spent.get("write", 0.0) + max(0.0, t1 - got["t_end"])
        row.update({f"{p}_s": spent.get(p, 0.0) for p in phases.PHASES})
        row["other_s"] = row["wall_s"] - sum(spent.get(p, 0.0) for p in phases.PHASES)
    else:
        row["null_reason"] = "the worker left no phase times (it died or was killed first): wall time alone"
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass
    append_row(out / FILES["jobs"], "jobs", row)
