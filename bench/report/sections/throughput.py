"""The Throughput section: images/s per implementation, ratios to PyTorch eager, the fastest named."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import (
    FLAG_COLUMN,
    WITHIN_PROCESS_SENTENCE,
    Section,
    _flagged,
    _plt,
    _reference,
    _save,
    compare_rows,
    grouped_bars,
    impl_label,
    left_out,
    no_difference_why,
    ratio_text,
)
from bench.report.fdr import apply_fdr, fdr_sentence
from bench.results.stats import FASTER, FEW, METHOD, MIN_EFFECT
from bench.results.stats import SAME as NO_DIFF


def _best_of(g: pd.DataFrame, rows: pd.DataFrame, ref: str | None, min_effect: float) -> str:
    """One model's part of the fastest sentence: the winner against the runner-up (and PyTorch eager)."""
    order = g.sort_values("images_per_s", ascending=False)
    best = order.iloc[0]
    of = lambda impl: rows[rows.impl == impl]  # noqa: E731
    if len(order) > 1:
        second = order.iloc[1]
        c = compare_rows(of(best.impl), of(second.impl), min_effect)
        if c["verdict"] == FEW:
            return f"{best.impl} ({best.images_per_s:,.0f} images/s; too few samples to test it against {second.impl})"
        if c["verdict"] != FASTER:
            why = c["verdict"].replace("excluded", "no verdict", 1) if c["verdict"].startswith("excluded") else NO_DIFF
            reason = no_difference_why(c["_cmp"], min_effect) if c["verdict"] == NO_DIFF else ""  # which test it missed
            return (f"{why} between {best.impl} ({best.images_per_s:,.0f} images/s) and {second.impl} "
                    f"({second.images_per_s:,.0f}; ratio {ratio_text(c['ratio'])} {c['95% interval']}"
                    + (f"; {reason}" if reason else "") + ")")
    vs = ""
    if ref and best.impl != ref and ref in set(g.impl):
        c = compare_rows(of(best.impl), of(ref), min_effect)
        vs = f", {ratio_text(c['ratio'])}x {c['95% interval']} {ref}"
    return f"{best.impl} ({best.images_per_s:,.0f} images/s{vs})"


def fastest_sentence(ok: pd.DataFrame, min_effect: float = MIN_EFFECT) -> list[str]:
    """'Which stack is fastest per model': the implementation with the highest median train images/s on
    synthetic input, per model (and precision / batch where a run holds several), tested against the
    runner-up: when the test cannot tell them apart the sentence says "no measurable difference"."""
    train = ok[(ok.measurement == "train") & (ok.input == "synthetic")]
    if not len(train):
        return []
    med = train.groupby(["model", "precision", "batch_size", "impl"]).images_per_s.median().reset_index()
    several = med.precision.nunique() > 1 or med.batch_size.nunique() > 1
    parts = []
    for (m, p, b), g in med.groupby(["model", "precision", "batch_size"], sort=False):
        rows = train[(train.model == m) & (train.precision == p) & (train.batch_size == b)]
        where = f" ({p}, batch {b})" if several else ""
        parts.append(f"{m}{where}: {_best_of(g, rows, _reference(set(g.impl)), min_effect)}; "
                     f"{g.impl.nunique()} compared")
    return ["Fastest train step per model (median images/s, synthetic input; tested against the runner-up, "
            f"minimum effect {min_effect:.0%}): " + " | ".join(parts) + "."]


def ratio_table(ok: pd.DataFrame, ref: str, min_effect: float) -> pd.DataFrame:
    """Every implementation against ``ref`` per model / measurement / precision / batch / input: images/s
    ratio, 95% interval, Mann-Whitney p, verdict, and which noise the interval carries."""
    keys = ["model", "measurement", "precision", "batch_size", "input"]
    out = []
    for k, g in ok.groupby(keys, sort=False):
        base = g[g.impl == ref]
        if not len(base):
            continue
        for impl, rows in g[g.impl != ref].groupby("impl", sort=False):
            out.append({**dict(zip(keys, k)), "implementation": impl, **compare_rows(rows, base, min_effect)})
    t = apply_fdr(pd.DataFrame(out), min_effect).drop(columns=["_cmp"], errors="ignore")  # judged together (BH)
    if "ratio" in t:
        t["ratio"] = t.ratio.map(ratio_text)  # three decimals as the interval: 1.100, not 1.1
    return t


def hygiene_notes(ok: pd.DataFrame) -> list[str]:
    """Rows measured under contention or with unstable timing, named: those left out of every verdict, and those
    kept because every repeat of their job was unstable (``bench.report.common.left_out``)."""
    if FLAG_COLUMN not in ok:
        return []
    flagged = ok[FLAG_COLUMN].fillna("").astype(str) != ""
    if not flagged.any():
        return []
    out = pd.concat([left_out(g) for _, g in ok.groupby(ok.job_id.str.replace(r"/r\d+$", "", regex=True))])
    out = out.reindex(ok.index)

    def names(rows):
        return "; ".join(f"{r.job_id} ({getattr(r, FLAG_COLUMN)})" for r in rows.itertuples())
    notes = []
    if out.any():
        notes.append(f"{int(out.sum())} throughput row(s) flagged and kept out of every verdict: {names(ok[out])}.")
    kept = ok[flagged & ~out]
    if len(kept):
        notes.append(f"{len(kept)} throughput row(s) flagged unstable and kept, because every repeat of their job was "
                     f"unstable (the job's own wobble on this machine; its verdicts rest on the spread between those "
                     f"processes): {names(kept)}.")
    return notes


def _explode_steps(df: pd.DataFrame) -> pd.DataFrame:
    """One row per timed step, with images/s of that step (for median + IQR error bars)."""
    rows = []
    for r in df.itertuples():
        for t in str(r.step_times_ms).split():
            rows.append({"model": r.model, "impl": r.impl, "measurement": r.measurement, "precision": r.precision,
                         "batch_size": r.batch_size, "input": r.input, "images_per_s": r.batch_size / (float(t) / 1e3)})
    return pd.DataFrame(rows)


SPLIT_ABOVE = 10.0  # bars further apart than this (largest / smallest) are drawn one panel per model


def _figures(s: Section, ok: pd.DataFrame, out: Path, plt) -> None:
    """One figure per measurement / precision / batch: median images/s per model and implementation, IQR bars,
    each implementation in its own colour, flagged rows hatched; one panel per model where the bars span more than
    SPLIT_ABOVE x (a shared linear axis would flatten the slow ones)."""
    steps = _explode_steps(ok[ok.input == "synthetic"])
    if not len(steps):
        return
    flags = ok[ok.input == "synthetic"].assign(flag=_flagged(ok[ok.input == "synthetic"])).groupby(
        ["model", "impl", "measurement", "precision", "batch_size"]).flag.all()
    for (meas, prec, bs), g in steps.groupby(["measurement", "precision", "batch_size"]):
        agg = g.groupby(["model", "impl"]).images_per_s.agg(
            med="median", lo=lambda v: v.quantile(0.25), hi=lambda v: v.quantile(0.75)).reset_index()
        agg["flag"] = [bool(flags.get((m, i, meas, prec, bs), False)) for m, i in zip(agg.model, agg.impl)]
        split = agg.med.max() / max(agg.med.min(), 1e-9) > SPLIT_ABOVE and agg.model.nunique() > 1
        models = list(dict.fromkeys(agg.model))
        panels = [[m] for m in models] if split else [models]
        fig, axes = plt.subplots(1, len(panels), figsize=(max(7.0, 2.6 * len(panels) + 1.5) if split else
                                                          max(7.0, 1.6 * len(models) + 3), 4.6), squeeze=False)
        handles = {}
        for ax, part in zip(axes[0], panels):
            for h in grouped_bars(ax, agg[agg.model.isin(part)], "model", "med", "lo", "hi", "flag", legend=False):
                handles.setdefault(h.get_label(), h)
            ax.set_ylabel("images/s" if ax is axes[0, 0] else "")
            ax.set_xlabel("")
        fig.legend(handles=list(handles.values()), loc="lower center", ncol=min(3, len(handles)), fontsize=8,
                   frameon=False)
        fig.suptitle(f"{meas}, {prec}, batch {bs}: median images/s, IQR bars"
                     + ("\none panel per model (values >10x apart)" if split else ""), fontsize=10)
        fig.tight_layout(rect=(0, 0.06 * (1 + (len(handles) - 1) // 3), 1, 1))
        stem = _save(fig, out, f"throughput_{meas}_{prec}_b{bs}", tight=False)
        s.figures.append((stem, f"{meas} images/s, {prec}, batch {bs}" + (", one panel per model" if split else "")))


def section_throughput(run: dict, out: Path) -> Section:
    s = Section("Throughput")
    df = run["throughput"]
    if df is None or not len(df):
        s.text.append("No throughput data in this run.")
        return s
    ok = df[df.status == "ok"].copy()
    if not len(ok):
        s.text.append("Every throughput job failed; see 'Errors and OOM'.")
        return s
    plt, _ = _plt()
    ok["impl"] = impl_label(ok)
    min_effect = run.get("min_effect", MIN_EFFECT)
    s.text += fastest_sentence(ok, min_effect)
    s.notes += hygiene_notes(ok)  # the Scoreboard's health line counts them; named here, one click away
    _figures(s, ok, out, plt)
    piv = ok.pivot_table(index=["model", "measurement", "precision", "batch_size", "input"], columns="impl",
                         values="images_per_s", aggfunc="median")
    piv.columns.name = None
    s.tables.append(("images/s (median step), one column per implementation (framework, backend, exec mode)",
                     piv.round(1).reset_index()))
    ref = _reference(piv.columns)
    others = [c for c in piv.columns if c != ref]
    if ref and others:
        table = ratio_table(ok, ref, min_effect)
        s.tables.append((f"ratio to {ref} (images/s of the implementation / {ref}; > 1 = faster), 95% interval, "
                         "verdict", table))
        s.notes.append(f"The ratio table's statistics (minimum effect {min_effect:.0%}): {METHOD}.")
        s.text += [x for x in [fdr_sentence(table)] if x]
        if len(table):
            noise = table.noise.value_counts()
            s.notes.append("The intervals rest on " + " and ".join(
                f"the spread {n} ({c} ratio(s){', --repeats: one row per process' if n.startswith('between') else ''})"
                for n, c in noise.items()) + "."
                + (f" {WITHIN_PROCESS_SENTENCE}" if any(n.startswith("within") for n in noise.index) else ""))
    elif not ref:
        s.text.append("No PyTorch eager rows in this run: no ratio table.")
    real = ok[ok.input == "real"]
    if len(real):
        s.notes.append("'real' rows run the CIFAR-10 pipeline (augmentation included) in the timed step; compare "
                      "them with the synthetic rows of the same batch.")
    first = ok.pivot_table(index=["model", "measurement"], columns="impl", values="first_step_s", aggfunc="max")
    first.columns.name = None
    s.tables.append(("first step (compile / trace / autotune), seconds", first.round(2).reset_index()))
    return s
