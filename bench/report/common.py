"""What the sections and the renderer share: a run's data, the implementation label, figure and table helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results.schema import FILES

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (0.5, 0.8, 0.9)  # test accuracies for the time-to-accuracy table
FLAG_COLUMN = "hygiene_flag"  # a throughput row measured under contention / with unstable timing: no verdict


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file stem, caption)


def load_run(run_dir: Path) -> dict:
    """{'meta': dict, 'throughput'|'memory'|'epochs'|'profile': DataFrame or None, 'damage': [sentence]}: the whole
    rows (``bench.results.read``: damaged rows dropped, each file's sentence in 'damage' and on stderr).

    Raises:
        bench.results.read.Unreadable: run_meta.json or a CSV that cannot be read (one sentence with the fix).
    """
    from bench.results.read import note, read_meta, read_table
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no results directory {run_dir}")
    out = {"meta": read_meta(run_dir) if (run_dir / "run_meta.json").exists() else {}, "dir": run_dir, "damage": []}
    for kind in ("throughput", "memory", "epochs", "profile"):
        t = read_table(run_dir / FILES[kind], kind)
        out[kind] = None if t is None else t.frame()
        if t is not None and t.note:  # said on stderr, and at the top of the report
            note(t.note)
            out["damage"].append(t.note)
    return out


def impl_label(df: pd.DataFrame) -> pd.Series:
    """The implementation of a row: ``torch <exec mode>`` | ``keras/<backend> <exec mode>`` (e.g. ``torch
    step-compile``, ``keras/jax jit``): one label per framework, backend and exec mode, never pooled. A row
    without an exec mode (older runs) is labelled by framework/backend alone."""
    from bench.core.stack_registry import stack_name
    base = pd.Series([stack_name(f, b) for f, b in zip(df.framework, df.backend.astype(str))], index=df.index, dtype=object)
    if "exec_mode" not in df or not len(df):
        return base
    mode = df.exec_mode
    return base.where(mode.isna() | (mode.astype(str) == ""), base + " " + mode.astype(str))


def _reference(impls) -> str | None:
    """The implementation every other is compared with: the reference stack (PyTorch) in its default mode
    (``torch eager``; ``torch`` in runs without exec modes)."""
    from bench.core.stack_registry import REFERENCE, STACKS
    mode = STACKS[REFERENCE].default_modes.get("cpu")
    return next((c for c in (f"{REFERENCE} {mode}", REFERENCE) if c in impls), None)


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def _save(fig, out: Path, stem: str) -> str:
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    fig.savefig(out / f"{stem}.svg")
    import matplotlib.pyplot as plt
    plt.close(fig)
    return stem


def _md_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no tabulate dependency); empty cells for nulls."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = [str(c) for c in df.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(out)


def _family(model: str) -> str:
    from bench.zoo import get_spec
    return get_spec(model).family


def _params(model: str) -> int | None:
    try:
        from bench.zoo import build
        from bench.zoo.counts import torch_param_counts
        return torch_param_counts(build(model, "torch"))[0]
    except ImportError:
        return None


def _flags(rows: pd.DataFrame) -> set[str]:
    if FLAG_COLUMN not in rows:
        return set()
    return {str(f) for f in rows[FLAG_COLUMN] if isinstance(f, str) and f}


# said wherever a verdict rests on one process per side (README, "Differences you can trust": the A/A check)
WITHIN_PROCESS_CAVEAT = ("one process per side: its steps do not show how much a fresh process of the same job "
                         "differs (on a small shared CPU, far more than its steps do: README, the A/A checks), so a "
                         "verdict may not hold from run to run; --repeats 3 (or more) puts the spread between "
                         "processes in the interval")


def noise_source(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """Which spread the interval carries: between processes where either side has repeats, else within."""
    return "between processes" if max(len(a), len(b)) > 1 else "within process"


def _flagged(rows: pd.DataFrame) -> pd.Series:
    if FLAG_COLUMN not in rows:
        return pd.Series(False, index=rows.index)
    return rows[FLAG_COLUMN].map(lambda f: isinstance(f, str) and bool(f))


def left_out(rows: pd.DataFrame) -> pd.Series:
    """Which processes (rows) of one side a verdict leaves out. A flagged process is left out when its side has
    clean ones: a contended one ran slow for a reason outside the job, an unstable one drifted where its
    repeats did not. When every process of a side is flagged and two or more of them are unstable alone (not
    contended), those are kept: a step time that wobbles in every fresh process is the job's own behaviour on
    this machine (a data pipeline in the step, a busy small CPU), not a disturbed measurement, and the test at
    the process level carries it in the spread between their medians. One unstable process alone, or a
    contended one, is left out; a side with nothing left gets no verdict."""
    flagged = _flagged(rows)
    if not flagged.all():
        return flagged
    contended = rows[FLAG_COLUMN].map(lambda f: isinstance(f, str) and "contended" in f)
    return contended if (~contended).sum() >= 2 else flagged


def compare_rows(a: pd.DataFrame, b: pd.DataFrame, min_effect: float) -> dict:
    """Throughput rows ``a`` against ``b`` (same batch): images/s ratio a / b, its 95% interval, the
    Mann-Whitney p, the verdict (a faster / slower than b) and the noise it rests on. Each row is one
    process (a repeat); its ``step_times_ms`` are the samples. Flagged rows (contended, unstable) are left out of
    the verdict as :func:`left_out` says: the other processes of each side are compared (the noise column says
    how many were left out, or that every repeat of a side was unstable and judged by their spread); a side with
    none left gets no verdict."""
    from bench.results.stats import compare_groups, parse_times
    oa, ob = left_out(a), left_out(b)
    clean = not oa.all() and not ob.all()
    ca, cb = (a[~oa], b[~ob]) if clean else (a, b)
    c = compare_groups([parse_times(t) for t in ca.step_times_ms], [parse_times(t) for t in cb.step_times_ms],
                       min_effect=min_effect)
    noise = noise_source(ca, cb)
    if clean and (oa.any() or ob.any()):
        noise += f"; {int(oa.sum() + ob.sum())} flagged process(es) left out"
    kept = int((_flagged(a) & ~oa).sum() + (_flagged(b) & ~ob).sum()) if clean else 0
    if kept:
        noise += f"; {kept} unstable process(es) kept (every repeat of their side unstable: judged by their spread)"
    verdict = c.verdict if clean else f"excluded ({' / '.join(sorted(_flags(a) | _flags(b)))})"
    return {"ratio": round(c.speed_ratio, 3), "95% interval": c.interval_text(),
            "p": "" if np.isnan(c.p) else f"{c.p:.2g}", "verdict": verdict, "noise": noise, "_cmp": c}
