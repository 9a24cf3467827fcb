"""The "Where the run's time went" section: every job's wall time split into its phases (``jobs.csv``, written by
``bench.pipeline.jobs.record_job`` from ``bench.core.phases``), stacked per job kind and implementation; the
share of the run that was timed work; the first step (cold start / compile) per implementation."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section, _plt, _save, impl_label
from bench.results.schema import FILES

PHASE_COLUMNS = ("start_s", "data_s", "build_s", "first_step_s", "warmup_s", "timed_s", "write_s", "other_s")


def load_jobs(run_dir: Path) -> pd.DataFrame | None:
    """The run's ``jobs.csv`` (None: a run from before it existed, or no job finished)."""
    from bench.results.read import read_frame  # the one reading path: a torn row is dropped and said, never a traceback
    return read_frame(Path(run_dir) / FILES["jobs"], "jobs")


def section_harness(run: dict, out: Path | None = None) -> Section:
    """Phases per job kind x implementation (seconds, summed over the run's jobs), the timed share, and the
    cold start / compile figure per implementation (median first step of its throughput jobs)."""
    s = Section("Where the run's time went")
    df = load_jobs(run.get("dir", "."))
    if df is None or not len(df):
        s.text.append("No jobs.csv in this run (written by runs since the harness records each job's phases).")
        return s
    df = df.assign(implementation=impl_label(df))
    have = df.dropna(subset=["timed_s"])
    wall, timed = df.wall_s.sum(), have.timed_s.sum()
    iso = ", ".join(f"{n} {k}" for k, n in df.isolation.value_counts().items())
    s.text.append(f"{len(df)} jobs ({iso}), {wall:.0f} s of job wall time in all; timed work {timed:.0f} s "
                  f"({timed / wall:.0%} of it). Phases: process start and imports, data, build, first step "
                  "(compile / trace), warm-up, timed work, rows written and process exit; other = in none of them.")
    s.text.append("Warm-up stops when the step is stable (the median of 5 steps moves under 5%), after at least 10 "
                  "steps and at most the job's cap (max_warmup: 15 in smoke, 100 in the other suites); a reused "
                  "worker's later jobs pay no process start or imports (isolation column of jobs.csv).")
    if len(have) < len(df):
        s.text.append(f"{len(df) - len(have)} job(s) left no phase times (killed or crashed first): wall time alone.")
    table = have.groupby(["job_kind", "implementation"])[list(PHASE_COLUMNS)].sum()
    table.insert(0, "jobs", have.groupby(["job_kind", "implementation"]).size())
    table["wall_s"] = have.groupby(["job_kind", "implementation"]).wall_s.sum()
    table["timed share"] = (table.timed_s / table.wall_s).map(lambda v: f"{v:.0%}")
    s.tables.append(("seconds per phase, summed over the jobs of each kind and implementation",
                     table.round(1).reset_index()))
    tp = have[have.job_kind == "throughput"]
    if len(tp):
        later = tp.worker_jobs.fillna(0) > 0
        c = pd.DataFrame({
            "cold start / compile, s (median)": tp[~later].groupby("implementation").first_step_s.median(),
            "cold jobs": tp[~later].groupby("implementation").size(),
            "first step in a reused worker, s (median)": tp[later].groupby("implementation").first_step_s.median(),
            "reused jobs": tp[later].groupby("implementation").size()}).round(2)
        s.tables.append(("cold start / compile: the first step of each implementation's throughput jobs (compile, trace, "
                         "autotune) in a process of their own or as a worker's first job, beside the same step in a "
                         "reused worker's later jobs", c.reset_index(names="implementation")))
    if out is not None:
        plt, _ = _plt()
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(table) + 1.5))
        table[list(PHASE_COLUMNS)].rename(columns=lambda c: c.removesuffix("_s")).plot.barh(stacked=True, ax=ax)
        ax.set_xlabel("seconds (summed over jobs)")
        ax.set_ylabel("")
        s.figures.append((_save(fig, out, "harness_phases"), "where each job kind's wall time went, per implementation"))
    return s
