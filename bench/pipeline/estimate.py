"""How long a plan will take, from what earlier runs measured on this machine (``jobs.csv``: each job's wall time),
the FLOP model (``bench.pipeline.suites.estimate_seconds``) only where no earlier run measured the job.

The history: every run folder under the results root whose ``run_meta.json`` names this machine (host name, CPU
model, core count) and that has a ``jobs.csv``. A job's estimate is the median wall time of its last three ok rows
(repeats pooled: ``/r<N>`` dropped from the id), under the same isolation when there is one, else under any.
"""
from __future__ import annotations

import csv
import json
import os
import platform
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.job import Job
from bench.results.read import read_rows
from bench.results.schema import FILES

TOO_LONG_S = 24 * 3600  # a plan estimated longer than this does not fit the device: the plan says so
FITS_S = 2 * 3600  # suites suggested instead: those estimated under this


def machine() -> tuple:
    """This machine as the history matches it: host name, CPU model, cores."""
    from bench.core.env import cpu_name
    return (platform.node(), cpu_name(), os.cpu_count())


def _meta_machine(meta: dict) -> tuple:
    return (meta.get("hostname"), meta.get("cpu"), meta.get("cpu_count"))


def history_key(job_id: str) -> str:
    """A job id without its repeat (``/r2``): every repeat of a job is the same job to the history."""
    return re.sub(r"/r\d+$", "", job_id)


def run_overheads(root: Path, here: tuple | None = None) -> dict[str, list[float]]:
    """{suite: [seconds]} of the time earlier whole runs on this machine spent outside their jobs (planning, checks,
    the summary and the report): ``run_meta.json``'s ``run_wall_s`` minus its jobs' wall times, oldest first."""
    here = here or machine()
    found: dict[str, list[tuple[str, float]]] = {}
    for d in sorted(Path(root).glob("*")) if Path(root).is_dir() else ():
        p, m = d / FILES["jobs"], d / "run_meta.json"
        try:
            meta = json.loads(m.read_text()) if m.is_file() and p.is_file() else {}
            if not meta.get("run_wall_s") or meta.get("resumed_at") or _meta_machine(meta) != here:
                continue
            jobs_s = sum(float(r["wall_s"]) for r in read_rows(p, "jobs") if r.get("wall_s"))
        except (OSError, ValueError, csv.Error):
            continue
        found.setdefault(meta.get("suite") or "", []).append((d.name, max(0.0, float(meta["run_wall_s"]) - jobs_s)))
    return {k: [s for _, s in sorted(v)] for k, v in found.items()}


def load_history(root: Path, here: tuple | None = None, exclude: str | None = None) -> tuple[dict, list[str]]:
    """{(job key, isolation): [wall seconds, oldest first]} of the ok jobs of every run of this machine under
    ``root`` (``exclude``: a run id left out, e.g. the one being resumed), and the run ids read."""
    here = here or machine()
    found: dict[tuple[str, str], list[tuple[str, float]]] = {}
    runs = []
    for d in sorted(Path(root).glob("*")) if Path(root).is_dir() else ():
        p, m = d / FILES["jobs"], d / "run_meta.json"
        if d.name == exclude or not p.is_file() or not m.is_file():
            continue
        try:
            if _meta_machine(json.loads(m.read_text())) != here:
                continue
            rows = [r for r in read_rows(p, "jobs") if r.get("status") == "ok" and r.get("wall_s")]
        except (OSError, ValueError, csv.Error):
            continue
        for r in rows:
            found.setdefault((history_key(r["job_id"]), r.get("isolation") or "fresh"), []).append(
                (r.get("timestamp") or "", float(r["wall_s"])))
        runs.append(d.name)
    return {k: [w for _, w in sorted(v)] for k, v in found.items()}, runs


@dataclass
class Estimate:
    """Seconds per job id and where each figure came from (``measured`` or ``flops``)."""

    seconds: dict[str, float] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)

    def total(self, job_ids) -> float:
        return sum(self.seconds[j] for j in job_ids)

    def says(self, job_ids) -> str:
        """Which the estimate of ``job_ids`` used, in words."""
        ids = list(job_ids)
        n = sum(1 for j in ids if self.source[j] == "measured")
        if n == len(ids):
            return f"measured: every job's wall time in earlier runs on this machine ({len(self.runs)} run(s))"
        if n == 0:
            return "FLOP model (no earlier run of these jobs on this machine): FLOPs at an assumed device speed + process start"
        return (f"measured for {n} of {len(ids)} jobs (earlier runs on this machine), the FLOP model for the other "
                f"{len(ids) - n}")


def estimate(jobs: list[Job], root: Path | None, isolation: str = "fresh", exclude: str | None = None,
             history: tuple[dict, list[str]] | None = None) -> Estimate:
    """Each job's estimated wall time: measured (history under ``root``) where there is one, else the FLOP model."""
    from bench.pipeline.suites import estimate_seconds
    hist, runs = history if history is not None else (load_history(root, exclude=exclude) if root else ({}, []))
    est = Estimate(runs=runs)
    from bench.pipeline.pool import REUSABLE
    for j in jobs:
        key, mine = history_key(j.job_id), isolation if j.kind in REUSABLE else "fresh"  # how the job will run
        walls = hist.get((key, mine)) or hist.get((key, "fresh")) or hist.get((key, "reused"))
        if walls:
            est.seconds[j.job_id], est.source[j.job_id] = statistics.median(walls[-3:]), "measured"
        else:
            est.seconds[j.job_id], est.source[j.job_id] = estimate_seconds(j), "flops"
    return est


def too_long(total_s: float, gpu: bool, suite: str, fitting: list[tuple[str, float]]) -> str | None:
    """The one sentence for a plan that cannot finish in reasonable time on its device (None: it can)."""
    if total_s <= TOO_LONG_S:
        return None
    dev = "GPU" if gpu else "CPU"
    alt = ", ".join(f"--suite {s} (~{t / 60:.0f} min)" for s, t in fitting[:4])
    where = "" if gpu else " or run it on a machine with a GPU (--device cuda)"
    return (f"This plan does not fit a {dev}: about {total_s / 86400:,.0f} days estimated for suite {suite}; "
            f"narrow it (--models, --frameworks, --batch-sizes, --epochs){where}" + (f", or run {alt} instead" if alt else "")
            + ".")


class Remaining:
    """The progress bar's remaining time: the estimates of the jobs not finished, scaled by the ratio of this run's
    finished jobs' wall time to their estimates (measured history: near 1), with the source said."""

    def __init__(self, est: Estimate) -> None:
        import time
        self.est, self.left = est, dict(est.seconds)
        self.spent = self.expected = 0.0
        self._clock, self._t = time.monotonic, None

    def start(self, job_id: str) -> None:
        self._t = self._clock()

    def done(self, job_id: str) -> None:
        if self._t is not None and job_id in self.left:
            self.spent += self._clock() - self._t
            self.expected += self.left.pop(job_id)
        self._t = None

    def seconds(self) -> float:
        scale = self.spent / self.expected if self.expected > 0 else 1.0
        return scale * sum(self.left.values())

    def describe(self) -> str:
        ids = list(self.left) or list(self.est.seconds)
        measured = sum(1 for j in ids if self.est.source.get(j) == "measured")
        src = "measured" if measured == len(ids) else "FLOP model" if measured == 0 else "measured+FLOP model"
        return f"~{self.seconds() / 60:.1f} min left ({src})"
