"""The diff that explains a change: per layer kind, phase and layer, where two runs' profiled train steps differ.

Both sides hold ``profile.csv`` rows of the same implementation, model, precision and batch (the twins share layer
names, so a layer's row joins across runs and across frameworks). For each such pair: the milliseconds and share of
the step each layer kind x phase and each layer takes on each side, the change, and how much of the step's total
change it explains; each side's coverage (the share of its step attributed to a named layer) is stated, so the part no
layer owns is visible; both sides' traces are linked. Used by the compare section (``--compare``) and by the history
pages at each change point. Where a side holds no profile, one line gives the command that would add one.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from bench.report.common import impl_label
from bench.results.schema import PROFILE_STEP_ROW

UNATTRIBUTED = "(unattributed)"
KEYS = ["impl", "model", "precision", "batch_size"]
SHOWN = 4  # pairs shown in full (tables); the others get their sentence only
TOP_LAYERS = 8


def _ok(run: dict) -> pd.DataFrame | None:
    df = run.get("profile")
    if df is None or not len(df):
        return None
    df = df[df.status == "ok"] if "status" in df else df
    if "depth" in df:  # the depth-sweep jobs' rows feed their own table: registry depth only
        from bench.report.common import at_registry_depth
        df = df[at_registry_depth(df)]
    return df.assign(impl=impl_label(df)) if len(df) else None


def _kind(rows: pd.DataFrame) -> pd.Series:
    return rows.kind.astype(str).where(rows.layer != UNATTRIBUTED, UNATTRIBUTED)


def diff_tables(after: pd.DataFrame, before: pd.DataFrame) -> dict:
    """One implementation's profile rows after (this run / the later side) and before: ``{"step": (ms before, ms
    after), "coverage": (before, after), "kinds": per kind (all phases), "phases": per kind x phase, "layers": the
    layers that changed most, "explained": share of the step's change the named layers' changes sum to}``; tables
    sorted by the size of their change, largest first."""
    sa, sb = after[after.layer == PROFILE_STEP_ROW], before[before.layer == PROFILE_STEP_ROW]
    la, lb = after[after.layer != PROFILE_STEP_ROW], before[before.layer != PROFILE_STEP_ROW]
    step_b = float(sb.ms_per_step.iloc[0]) if len(sb) else float(lb.ms_per_step.sum())
    step_a = float(sa.ms_per_step.iloc[0]) if len(sa) else float(la.ms_per_step.sum())
    total = step_a - step_b

    def table(by: list[str], key) -> pd.DataFrame:
        b = lb.assign(kind=_kind(lb)).groupby(by).ms_per_step.sum().rename("ms_before")
        a = la.assign(kind=_kind(la)).groupby(by).ms_per_step.sum().rename("ms_after")
        t = pd.concat([b, a], axis=1).fillna(0.0).reset_index()
        t["share_before"] = t.ms_before / step_b if step_b else float("nan")
        t["share_after"] = t.ms_after / step_a if step_a else float("nan")
        t["change_ms"] = t.ms_after - t.ms_before
        t["share_of_change"] = t.change_ms / total if total else float("nan")
        t = t.reindex(t.change_ms.abs().sort_values(ascending=False).index).reset_index(drop=True)
        return key(t)

    def rounded(t: pd.DataFrame) -> pd.DataFrame:
        return t.round({"ms_before": 3, "ms_after": 3, "change_ms": 3, "share_before": 3, "share_after": 3,
                        "share_of_change": 3})
    named = la[la.layer != UNATTRIBUTED].ms_per_step.sum() - lb[lb.layer != UNATTRIBUTED].ms_per_step.sum()
    cov = lambda s: float(s.coverage.iloc[0]) if len(s) and "coverage" in s and pd.notna(s.coverage.iloc[0]) else None  # noqa: E731
    return {"step": (step_b, step_a), "coverage": (cov(sb), cov(sa)),
            "kinds": rounded(table(["kind"], lambda t: t)),
            "phases": rounded(table(["kind", "phase"], lambda t: t)),
            "layers": rounded(table(["layer", "kind", "phase"], lambda t: t.head(TOP_LAYERS))),
            "explained": float(named / total) if total else float("nan")}


def diff_sentence(label: str, d: dict) -> str:
    """One line: the step's change, the kind that changed most (named first), its share of the change, coverage."""
    (b, a), (cb, ca) = d["step"], d["coverage"]
    k, p = d["kinds"], d["phases"]
    pct = f" ({100 * (a / b - 1):+.1f}%)" if b else ""
    top = k.iloc[0] if len(k) else None
    what = ""
    if top is not None and a != b:
        ph = p[p.kind == top.kind].iloc[0]
        what = (f"; {top.kind} changed most, {top.change_ms:+.2f} ms ({top.ms_before:.2f} -> {top.ms_after:.2f} ms, "
                f"share {top.share_before:.0%} -> {top.share_after:.0%}), {top.share_of_change:.0%} of the change "
                f"(most in its {ph.phase} phase, {ph.change_ms:+.2f} ms)")
        if len(k) > 1:
            what += f"; then {k.iloc[1].kind} {k.iloc[1].change_ms:+.2f} ms"
    cover = " / ".join("n/a" if c is None else f"{c:.0%}" for c in (cb, ca))
    expl = "" if d["explained"] != d["explained"] else f"; the named layers' changes sum to {d['explained']:.0%} of it"
    return f"{label}: profiled step {b:.2f} -> {a:.2f} ms{pct}{what}{expl} (coverage {cover}, before / after)."


def _trace_link(rows: pd.DataFrame, run: dict, out: Path) -> str:
    s = rows[rows.layer == PROFILE_STEP_ROW]
    p = s.trace_path.iloc[0] if len(s) and "trace_path" in s else None
    if not isinstance(p, str) or not p:
        return "no trace kept"
    return f"[{Path(p).name}]({os.path.relpath(Path(run['dir']) / p, out)})"


def profile_command(models, frameworks=("torch", "keras")) -> str:
    """The command that adds profile rows for ``models``."""
    return (f"`python -m bench.profile {' '.join(sorted(set(models))) or 'MODEL'} --frameworks {','.join(frameworks)}`"
            " (or a --suite with profile jobs: cifar10-quick, profile)")


def profile_diff_parts(after: dict, before: dict, out: Path, models=(), first=(),
                       labels=("this run", "the other")) -> tuple[list[str], list[tuple[str, pd.DataFrame]]]:
    """(sentences, tables) of the profile diff between two runs (``after`` against ``before``). ``models``: the
    models a missing profile's command names; ``first``: (impl, model) pairs to show first (those whose throughput
    changed). Where a side has no profile rows: one sentence with the command that adds them."""
    a, b = _ok(after), _ok(before)
    if a is None or b is None:
        which = " and ".join(lbl for lbl, x in zip(labels, (a, b)) if x is None)
        return [f"No per-layer diff: no profile rows in {which}; {profile_command(models)} on both sides adds one."], []
    pairs = []
    bg = dict(iter(b.groupby(KEYS, sort=False)))
    for k, ga in a.groupby(KEYS, sort=False):
        if k in bg:
            d = diff_tables(ga, bg[k])
            pairs.append((k, d, ga, bg[k]))
    if not pairs:
        return [f"No per-layer diff: the two runs profile no implementation, model, precision and batch in common; "
                f"{profile_command(models)} on both sides adds one."], []
    first = set(first)
    pairs.sort(key=lambda p: ((p[0][0], p[0][1]) not in first, -abs(p[1]["step"][1] - p[1]["step"][0])))
    texts = [f"Where the time changed ({labels[0]} against {labels[1]}, profile rows of both; a kind's ms is the sum of "
             "its layers' own ms per profiled step; the share of change is its ms change over the profiled step's):"]
    tables = []
    for i, (k, d, ga, gb) in enumerate(pairs):
        label = f"{k[0]} {k[1]} {k[2]} batch {k[3]}"
        texts.append(diff_sentence(label, d))
        if i < SHOWN:
            traces = pd.DataFrame([{"side": labels[1], "trace": _trace_link(gb, before, out)},
                                   {"side": labels[0], "trace": _trace_link(ga, after, out)}])
            tables += [(f"{label}: per layer kind and phase, {labels[1]} -> {labels[0]}", d["phases"]),
                       (f"{label}: the {TOP_LAYERS} layers whose time changed most", d["layers"]),
                       (f"{label}: traces (Perfetto / chrome://tracing)", traces)]
    return texts, tables
