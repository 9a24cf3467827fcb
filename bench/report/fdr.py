"""Many verdicts, one error rate: a table of comparisons (a report's ratio table, a compare's throughput table) judged
together with Benjamini-Hochberg (:func:`bench.results.stats.fdr`), and the one line that says so."""
from __future__ import annotations

import pandas as pd

from bench.results.stats import ALPHA, fdr

Q_COLUMN = "q (BH)"


def apply_fdr(t: pd.DataFrame, min_effect: float, alpha: float = ALPHA) -> pd.DataFrame:
    """``t`` with one row per comparison and its :class:`~bench.results.stats.Comparison` in ``_cmp``: every row with
    a p (rows ``excluded`` for flagged processes and ``too few samples`` are not tests) gets its BH-adjusted q in
    :data:`Q_COLUMN` (after ``p``) and the verdict that q gives; ``_cmp`` holds the corrected comparison."""
    if not len(t) or "_cmp" not in t:
        return t
    t = t.copy()
    rows = list(t.index[~t.verdict.astype(str).str.startswith("excluded")])
    t.insert(t.columns.get_loc("p") + 1 if "p" in t else len(t.columns), Q_COLUMN, "")
    for i, c in zip(rows, fdr([t.at[i, "_cmp"] for i in rows], min_effect, alpha)):
        t.at[i, "_cmp"] = c
        if c.q == c.q:
            t.at[i, Q_COLUMN] = f"{c.q:.2g}"
            t.at[i, "verdict"] = c.verdict
    return t


def fdr_sentence(t: pd.DataFrame, alpha: float = ALPHA) -> str | None:
    """The one line a table corrected by :func:`apply_fdr` carries: how many tests, which procedure, which level."""
    n = int((t[Q_COLUMN] != "").sum()) if Q_COLUMN in t else 0
    if not n:
        return None
    return (f"False discovery rate controlled over the {n} test(s) of this table: Benjamini-Hochberg at {alpha} (a "
            f"verdict asks its adjusted q < {alpha} as well as the minimum effect and an interval excluding 1, so at "
            f"most {alpha:.0%} of its faster / slower calls are expected to be false).")
