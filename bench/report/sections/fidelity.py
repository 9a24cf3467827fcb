"""The Fidelity section: the framework gap in test accuracy beside the spread between seeds."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section, _plt, _save, impl_label, impl_palette


def fidelity_table(ok: pd.DataFrame) -> pd.DataFrame:
    """Per plan and epoch: each implementation's mean test accuracy over seeds and its spread
    (max - min between seeds), the gap between the implementations' means, and gap / spread.

    ``ok`` has an ``impl`` column; a plan is (model, recipe, precision, train_examples). Only plans
    with at least two seeds in some implementation and at least two implementations are kept.
    """
    keys = ["model", "recipe", "precision", "train_examples"]
    ok = ok.assign(train_examples=ok.train_examples.fillna(-1))
    rows = []
    for plan, g in ok.groupby(keys):
        if g.impl.nunique() < 2 or g.groupby("impl").seed.nunique().max() < 2:
            continue
        for epoch, ge in g.groupby("epoch"):
            row = dict(zip(keys, plan), epoch=int(epoch))
            means, spreads = {}, {}
            for impl, gi in ge.groupby("impl"):
                acc = gi.drop_duplicates("seed").test_acc
                means[impl], spreads[impl] = acc.mean(), acc.max() - acc.min()
                row[f"{impl} mean"], row[f"{impl} spread"], row[f"{impl} seeds"] = acc.mean(), acc.max() - acc.min(), len(acc)
            gap = max(means.values()) - min(means.values())
            spread = max(spreads.values())
            row["gap between frameworks"] = gap
            row["largest seed spread"] = spread
            row["gap / spread"] = gap / spread if spread > 0 else None
            rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        out["train_examples"] = out.train_examples.astype(int).astype(object).where(out.train_examples >= 0, "all")
    return out


def section_fidelity(run: dict, out: Path) -> Section:
    """The framework gap in test accuracy set beside the spread between seeds of one framework."""
    s = Section("Fidelity")
    df = run["epochs"]
    if df is None or not len(df) or "seed" not in df:
        s.text.append("No training with several seeds in this run (the `fidelity` suite makes one).")
        return s
    ok = df[df.status == "ok"].copy()
    ok["impl"] = impl_label(ok)
    tbl = fidelity_table(ok)
    if not len(tbl):
        s.text.append("No plan trained with two or more seeds in two implementations: no gap to set beside a spread "
                      "(the `fidelity` suite trains each twin with several seeds).")
        return s
    s.notes.append("Each twin trained on the same plan (same data order and augmentation per seed) with several "
                  "seeds. The spread between seeds of one framework is what chance alone moves test accuracy; "
                  "a gap between the frameworks' means within that spread is no evidence of a framework "
                  "difference (gap / spread below 1). Seeds also change the initial weights, which differ between "
                  "frameworks at one seed.")
    s.tables.append(("test accuracy per epoch: mean and spread over seeds, and the gap between implementations",
                     tbl.round(4)))
    plt, sns = _plt()
    sub = ok[ok.model.isin(tbl.model.unique())].copy()
    sub["seed"] = sub.seed.astype(int).astype(str)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=sub, x="epoch", y="test_acc", hue="impl", units="seed", estimator=None, marker="o", ax=ax,
                 alpha=0.8, palette=impl_palette(sub.impl))
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="Test accuracy per epoch, one line per seed", ylabel="test accuracy")
    s.figures.append((_save(fig, out, "fidelity_per_seed"), "test accuracy per epoch, every seed of each twin"))
    return s
