"""The Errors and OOM section: every row that is not ok, kept in the CSVs; a memory sweep's largest batch that fit;
jobs that failed, then ended on resume (their earlier attempt's rows in ``<file>.attempts``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section


def section_errors(run: dict, out: Path | None = None) -> Section:
    """Every row that is not ok, from every CSV (``out`` unused: it draws no figure)."""
    s = Section("Errors and OOM")
    frames = []
    for kind in ("throughput", "memory", "epochs", "profile"):
        df = run.get(kind)
        if df is not None and len(df):
            bad = df[df.status != "ok"]
            if len(bad):
                frames.append(bad.assign(csv=kind)[["csv", "job_id", "status", "error", "null_reason"]])
    from bench.measures.memory import largest_fit
    fits = largest_fit(run.get("memory"))
    if fits:  # an out-of-memory batch of a memory sweep is a result: the sweep's answer
        s.text.append("Out of memory is a result of a memory sweep: " + "; ".join(fits) + ".")
    if frames:
        s.tables.append(("rows that are not ok (kept in the CSVs)", pd.concat(frames)))
    else:
        s.text.append("Every job finished ok.")
    s.text += resumed_after_failure(run)
    return s


def resumed_after_failure(run: dict) -> list[str]:
    """One sentence per job whose earlier attempt failed and that ``--resume`` ran again: how each attempt ended
    (the run's CSVs hold the last attempt alone; the earlier one is in ``<file>.attempts``)."""
    from bench.results.read import earlier_attempts
    if run.get("dir") is None:
        return []
    said = []
    for kind in ("throughput", "memory", "epochs", "profile", "scaling"):
        df = run.get(kind)
        now = {} if df is None or not len(df) else df.groupby("job_id", sort=False).status.last().to_dict()
        seen = set()
        for r in earlier_attempts(run["dir"], kind):
            if r["status"] in ("ok", "oom", "skipped") or r["job_id"] in seen or r["job_id"] not in now:
                continue
            seen.add(r["job_id"])
            how = "ok" if now[r["job_id"]] == "ok" else now[r["job_id"]]
            said.append(f"{r['job_id']}: {r['status']}, then {how} on resume (the earlier attempt: "
                        f"{(r.get('error') or '').splitlines()[0][:120] if r.get('error') else 'no error text'}).")
    return said
