"""The Errors and OOM section: every row that is not ok, kept in the CSVs."""
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
    return s
