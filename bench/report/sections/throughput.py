"""The Throughput section: images/s per implementation, ratios to PyTorch eager, the fastest named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.common import Section, _plt, _reference, _save, impl_label


def fastest_sentence(ok: pd.DataFrame) -> list[str]:
    """'Which stack is fastest per model': the implementation with the highest median train images/s on
    synthetic input, per model (and precision / batch where a run holds several), against PyTorch eager."""
    train = ok[(ok.measurement == "train") & (ok.input == "synthetic")]
    if not len(train):
        return []
    med = train.groupby(["model", "precision", "batch_size", "impl"]).images_per_s.median().reset_index()
    several = med.precision.nunique() > 1 or med.batch_size.nunique() > 1
    parts = []
    for (m, p, b), g in med.groupby(["model", "precision", "batch_size"], sort=False):
        best = g.loc[g.images_per_s.idxmax()]
        ref = g[g.impl == _reference(set(g.impl))]
        vs = (f", {best.images_per_s / ref.images_per_s.iloc[0]:.2f}x {ref.impl.iloc[0]}"
              if len(ref) and best.impl != ref.impl.iloc[0] else "")
        where = f" ({p}, batch {b})" if several else ""
        parts.append(f"{m}{where}: {best.impl} ({best.images_per_s:,.0f} images/s{vs}; {g.impl.nunique()} compared)")
    return ["Fastest train step per model (median images/s, synthetic input): " + "; ".join(parts) + "."]


def _explode_steps(df: pd.DataFrame) -> pd.DataFrame:
    """One row per timed step, with images/s of that step (for median + IQR error bars)."""
    rows = []
    for r in df.itertuples():
        for t in str(r.step_times_ms).split():
            rows.append({"model": r.model, "impl": r.impl, "measurement": r.measurement, "precision": r.precision,
                         "batch_size": r.batch_size, "input": r.input, "images_per_s": r.batch_size / (float(t) / 1e3)})
    return pd.DataFrame(rows)


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
    plt, sns = _plt()
    ok["impl"] = impl_label(ok)
    s.text += fastest_sentence(ok)
    steps = _explode_steps(ok[ok.input == "synthetic"])
    groups = steps.groupby(["measurement", "precision", "batch_size"]) if len(steps) else []
    for (meas, prec, bs), g in groups:
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * g.model.nunique() + 3), 4))
        sns.barplot(data=g, x="model", y="images_per_s", hue="impl", estimator=np.median, errorbar=("pi", 50), ax=ax)
        ax.set_title(f"{meas}, {prec}, batch {bs}: median images/s, IQR bars")
        ax.set_ylabel("images/s")
        ax.tick_params(axis="x", rotation=30)
        stem = _save(fig, out, f"throughput_{meas}_{prec}_b{bs}")
        s.figures.append((stem, f"{meas} images/s, {prec}, batch {bs}"))
    piv = ok.pivot_table(index=["model", "measurement", "precision", "batch_size", "input"], columns="impl",
                         values="images_per_s", aggfunc="median")
    piv.columns.name = None
    s.tables.append(("images/s (median step), one column per implementation (framework, backend, exec mode)",
                     piv.round(1).reset_index()))
    ref = _reference(piv.columns)
    others = [c for c in piv.columns if c != ref]
    if ref and others:
        ratio = pd.DataFrame({f"{c} / {ref}": piv[c] / piv[ref] for c in others}, index=piv.index)
        s.tables.append((f"ratio to {ref} (images/s; > 1 = faster than PyTorch eager)", ratio.round(2).reset_index()))
    elif not ref:
        s.text.append("No PyTorch eager rows in this run: no ratio table.")
    real = ok[ok.input == "real"]
    if len(real):
        s.text.append("'real' rows run the CIFAR-10 pipeline (augmentation included) in the timed step; compare "
                      "them with the synthetic rows of the same batch.")
    first = ok.pivot_table(index=["model", "measurement"], columns="impl", values="first_step_s", aggfunc="max")
    first.columns.name = None
    s.tables.append(("first step (compile / trace / autotune), seconds", first.round(2).reset_index()))
    return s
