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
    """One part of a report. ``text``: the answers, shown; ``notes``: the method and caveats, one click away (a
    collapsed <details> under the section); ``tables``: (one-line caption, frame; a cell may be a :class:`Link`);
    ``figures``: (file stem, one-line caption); ``empty``: what would fill a section with nothing to show (one line
    replaces it)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file stem, caption)
    notes: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor(self.title)


def anchor(title: str) -> str:
    """The HTML id of a section, a table or a figure: lower case, runs of other characters as one '-'."""
    import re
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass(frozen=True)
class Link:
    """A table cell that links: Markdown ``[text](href)``, HTML ``<a href>``."""

    text: str
    href: str

    def __str__(self) -> str:
        return f"[{self.text}]({self.href})"


@dataclass(frozen=True)
class Cell:
    """A table cell of several parts, each a string or a :class:`Link` (a scoreboard answer with its evidence)."""

    parts: tuple

    def __str__(self) -> str:
        return "".join(map(str, self.parts))


def bring(run_dir: Path | None, rel: str, out: Path) -> str:
    """Put the run's file ``rel`` (a trace) inside the report folder ``out`` at the same relative path, hard-linked
    where the filesystem allows, else copied, so a copied or zipped report keeps it; returns the href (``rel``).
    A file that is not there is left as is (the href says where it was)."""
    import os
    import shutil
    src, dst = Path(run_dir or ".") / rel, Path(out) / rel
    if src.is_file() and not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
    return Path(rel).as_posix()


# one colour per implementation in every figure of every report and history page: the stack's hue (in the registry's
# order: torch blue, keras/tensorflow orange, keras/jax green, keras/torch purple), its exec mode's shade
_HUES = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")


def impl_colour(impl: str) -> tuple:
    """The colour of an implementation label (``torch eager``, ``keras/jax jit``, ``torch``) in any figure: fixed by
    the label alone, so the same implementation keeps its colour across figures, reports and runs."""
    from matplotlib import colormaps

    from bench.core.stack_registry import STACKS
    name, _, mode = str(impl).partition(" ")
    names = list(STACKS)
    if name not in names:
        return tuple(float(c) for c in colormaps["Greys"](0.55 + 0.1 * (sum(map(ord, str(impl))) % 4)))
    info = STACKS[name]
    modes = list(info.exec_modes)
    shade = 0.85 - 0.2 * (modes.index(mode) if mode in modes else 0)
    return tuple(float(c) for c in colormaps[_HUES[names.index(name) % len(_HUES)]](shade))


def impl_palette(impls) -> dict:
    """{implementation: colour} for seaborn's ``palette=`` (and ``hue_order`` from its keys, sorted)."""
    return {i: impl_colour(i) for i in sorted(set(map(str, impls)))}


FLAGGED_HATCH = "///"  # a throughput row flagged contended / unstable: its bar hatched and faded, named in the legend


def impl_gid(impl: str) -> str:
    """The SVG id prefix of what a figure draws for an implementation (the colour test reads it back)."""
    return "impl-" + anchor(str(impl))


def grouped_bars(ax, data: pd.DataFrame, x: str, y: str, lo: str | None = None, hi: str | None = None,
                 flagged: str | None = None, legend: bool = True) -> list:
    """Bars of ``y`` per ``x`` group and implementation (``impl``), each implementation in its :func:`impl_colour`;
    error bars from ``lo`` to ``hi``; rows where ``flagged`` is true hatched and faded. The legend names only what is
    drawn, and "hatched: flagged" only when a bar is; returns its handles (``legend=False``: the caller places them)."""
    from matplotlib.patches import Patch
    groups = list(dict.fromkeys(data[x]))
    impls = sorted(set(data.impl))
    width = 0.8 / max(1, len(impls))
    any_flag = False
    for j, impl in enumerate(impls):
        rows = data[data.impl == impl]
        for r in rows.itertuples(index=False):
            xi = groups.index(getattr(r, x)) - 0.4 + width * (j + 0.5)
            flag = bool(flagged and getattr(r, flagged))
            any_flag |= flag
            v = getattr(r, y)
            ax.bar(xi, v, width * 0.95, color=impl_colour(impl), alpha=0.45 if flag else 1.0,
                   hatch=FLAGGED_HATCH if flag else None, edgecolor="black" if flag else "none", gid=impl_gid(impl))
            if lo and hi and pd.notna(getattr(r, lo)) and pd.notna(getattr(r, hi)):
                ax.plot([xi, xi], [getattr(r, lo), getattr(r, hi)], color="black", lw=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    handles = [Patch(color=impl_colour(i), label=i) for i in impls]
    if any_flag:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=FLAGGED_HATCH,
                             label="hatched, faded: flagged (contended / unstable), no verdict"))
    if legend:
        ax.legend(handles=handles, fontsize=8)
    return handles


def load_run(run_dir: Path) -> dict:
    """{'meta': dict, 'throughput'|'memory'|'epochs'|'profile'|'scaling'|'roofline': DataFrame or None, 'damage': [sentence]}: the whole
    rows (``bench.results.read``: damaged rows dropped, each file's sentence in 'damage' and on stderr).

    Raises:
        bench.results.read.Unreadable: run_meta.json or a CSV that cannot be read (one sentence with the fix).
    """
    from bench.results.read import note, read_meta, read_table
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no results directory {run_dir}")
    out = {"meta": read_meta(run_dir) if (run_dir / "run_meta.json").exists() else {}, "dir": run_dir, "damage": []}
    for kind in ("throughput", "memory", "epochs", "profile", "scaling", "roofline"):
        t = read_table(run_dir / FILES[kind], kind)
        out[kind] = None if t is None else t.frame()
        if t is not None and t.note:  # said on stderr, and at the top of the report
            note(t.note)
            out["damage"].append(t.note)
    _load_user_twins(out)
    return out


def distinct_twins(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with a user twin's ``model`` written ``name@<sha256[:12]>`` (its file's text): history and compare
    group by model, and two networks that share a name are never joined. Built-in rows are left as they are."""
    if "twin_sha256" not in df or not len(df):
        return df
    sha = df.twin_sha256.fillna("").astype(str)
    df = df.copy()
    df["model"] = df.model.where(sha == "", df.model.astype(str) + "@" + sha.str[:12])
    return df


def _load_user_twins(run: dict) -> None:
    """Register the run's user twins (their rows' ``twin_source``) so the sections can read their specs; a file
    that is gone or changed since the run is said on stderr (its rows are reported by name)."""
    import sys

    from bench.zoo import TwinsError, load_user_twins
    sources = set()
    for kind in ("throughput", "memory", "epochs", "profile", "scaling"):
        df = run.get(kind)
        if df is not None and "twin_source" in df:
            sources |= {s for s in df.twin_source.dropna().astype(str) if s}
    for src in sorted(sources):
        try:
            load_user_twins([src])
        except TwinsError as e:
            print(f"note: {e}", file=sys.stderr)


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


def _save(fig, out: Path, stem: str, tight: bool = True) -> str:
    if tight:
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


# said wherever a verdict rests on one process per side (docs/trust.md, "Measured error rates": the A/A checks)
WITHIN_PROCESS_CAVEAT = ("one process per side: its steps do not show how much a fresh process of the same job "
                         "differs (on a small shared CPU, far more than its steps do: docs/trust.md, the A/A checks), so a "
                         "verdict may not hold from run to run; --repeats 3 (or more) puts the spread between "
                         "processes in the interval")
WITHIN_PROCESS_SENTENCE = WITHIN_PROCESS_CAVEAT[0].upper() + WITHIN_PROCESS_CAVEAT[1:] + "."  # said once, not twice


RATIO_DIGITS = 3  # every ratio and its interval, in every table and sentence: 1.100 [1.039, 1.121]


def ratio_text(r: float) -> str:
    """A ratio as every part of a report prints it (:data:`RATIO_DIGITS` decimals; '' for nan)."""
    return "" if r != r else f"{r:.{RATIO_DIGITS}f}"


def no_difference_why(c, min_effect: float, alpha: float | None = None) -> str:
    """Why a :class:`~bench.results.stats.Comparison` is "no measurable difference", in a few words: the first of the
    verdict's conditions (``bench.results.stats.verdict_of``) that it misses: the test (q after Benjamini-Hochberg
    where the comparison was corrected, else p), the minimum effect, the 95% interval. '' when it misses none."""
    from bench.results.stats import ALPHA
    alpha = ALPHA if alpha is None else alpha
    if c.q == c.q and c.q >= alpha:
        return f"q {c.q:.2g} >= {alpha:g} after Benjamini-Hochberg" + (f" (p {c.p:.2g})" if c.p < alpha else "")
    if c.p == c.p and c.p >= alpha:
        return f"p {c.p:.2g} >= {alpha:g}"
    if abs(c.time_ratio - 1) <= min_effect:
        return f"an effect under the {min_effect:.0%} minimum"
    if c.lo <= 1 <= c.hi:
        return "its 95% interval includes 1"
    return ""


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
    return {"ratio": round(c.speed_ratio, RATIO_DIGITS), "95% interval": c.interval_text(digits=RATIO_DIGITS),
            "p": "" if np.isnan(c.p) else f"{c.p:.2g}", "verdict": verdict, "noise": noise, "_cmp": c}


def at_registry_depth(df: pd.DataFrame) -> pd.Series:
    """True for rows of a model at its registry depth (the depth-sweep jobs' rows feed the DenseNet table alone)."""
    if "depth" not in df:
        return pd.Series(True, index=df.index)
    from bench.zoo import get_spec
    reg = df.model.map(lambda m: get_spec(m).depth)
    return df.depth.isna() | (df.depth == reg)
