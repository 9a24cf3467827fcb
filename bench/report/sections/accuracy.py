"""The Accuracy section: accuracy per epoch, parameters vs accuracy, time to accuracy (the degradation figure of
plain vs residual nets is its own section, bench.report.sections.degradation)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import TARGETS, Section, _params, _plt, _save, impl_colour, impl_gid, impl_label


def section_accuracy(run: dict, out: Path) -> Section:
    from bench.zoo.anchors import PAPER_ERRORS
    s = Section("Accuracy")
    df = run["epochs"]
    if df is None or not len(df) or not (df.status == "ok").any():
        s.text.append("No training in this run.")
        return s
    plt, _ = _plt()
    ok = df[df.status == "ok"].copy()
    ok["impl"] = impl_label(ok)
    _per_epoch_figure(s, ok, out, plt)
    last = ok.sort_values("epoch").groupby(["model", "impl", "recipe", "precision"]).tail(1).copy()
    from bench.zoo import get_entry
    last["params_m"] = [(_params(m) or 0) / 1e6 for m in last.model]
    refs = [(p, 1 - e / 100, m) for m, (e, p, _) in PAPER_ERRORS.items() if get_entry(m) and m in set(last.model)]
    _params_figure(s, last, refs, out, plt)
    cols = ["model", "impl", "recipe", "precision", "epoch", "epochs_total", "test_acc", "train_acc",
            "train_images_per_s"]
    tbl = last[cols].copy()
    tbl["published_acc (reference)"] = [1 - PAPER_ERRORS[m][0] / 100 if m in PAPER_ERRORS else None for m in tbl.model]
    s.tables.append(("final epoch", tbl.round(4)))
    s.text += subset_notes(last)
    standin = standin_check(last)
    if standin is not None:
        s.tables.append(("resnet20_v1, paper recipe, stand-in data, against the reference script", standin))
        s.notes.append("The reference script is a plain train_resnet20.py (H100, docs/anchors.md); run it on the same "
                       "machine for the figure that counts.")
    tta = []
    for (m, impl, rec, prec), g in ok.sort_values("epoch").groupby(["model", "impl", "recipe", "precision"]):
        wall = g.epoch_s.cumsum()
        row = {"model": m, "impl": impl, "recipe": rec, "precision": prec}
        for t in TARGETS:
            hit = g.test_acc.values >= t
            row[f"s_to_{int(t * 100)}%"] = round(float(wall.values[hit.argmax()]), 1) if hit.any() else "not reached"
        tta.append(row)
    s.tables.append(("time to a target test accuracy (training seconds, evaluation excluded)", pd.DataFrame(tta)))
    if ok.epochs_total.max() > ok.epoch.max():
        s.text.append("Some trainings are unfinished (epoch < epochs_total): resume the run to complete them.")
    return s


def _per_epoch_figure(s: Section, ok: pd.DataFrame, out: Path, plt) -> None:
    """One panel per model (up to 3 a row): test accuracy solid, train dashed, one colour per implementation;
    integer epoch ticks; every label inside the canvas."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator
    models = sorted(ok.model.unique())
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, 4.3 * cols), 3.3 * rows + 0.9), squeeze=False)
    for ax, m in zip(axes.flat, models):
        for impl, g in ok[ok.model == m].groupby("impl"):
            g = g.groupby("epoch")[["test_acc", "train_acc"]].mean()
            ax.plot(g.index, g.test_acc, "-o", ms=3, color=impl_colour(impl), gid=impl_gid(impl))
            ax.plot(g.index, g.train_acc, "--", color=impl_colour(impl), alpha=0.8, gid=impl_gid(impl))
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    impls = sorted(ok.impl.unique())
    handles = [Line2D([], [], color=impl_colour(i), lw=2, label=i) for i in impls]
    handles += [Line2D([], [], color="gray", ls="-", label="test"), Line2D([], [], color="gray", ls="--", label="train")]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    fig.suptitle("Accuracy per epoch: test solid, train dashed", fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if rows == 1 else 0.04, 1, 0.95))
    s.figures.append((_save(fig, out, "accuracy_per_epoch", tight=False), "train and test accuracy per epoch"))


def _params_figure(s: Section, last: pd.DataFrame, refs: list, out: Path, plt) -> None:
    """Final test accuracy against parameters: our runs as filled markers (colour: implementation, marker: model),
    the published figures as black crosses; no text labels on the points (they overlap): the table names them."""
    from matplotlib.lines import Line2D
    if last.model.nunique() < 2:  # one model: a chart of one x position says nothing the final-epoch table does not
        s.notes.append("One model trained: no parameters-vs-accuracy chart (the final-epoch table has its accuracy).")
        return
    markers = dict(zip(sorted(last.model.unique()), "osD^vP*Xph"))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for r in last.itertuples():
        ax.scatter(r.params_m, r.test_acc, s=60, color=impl_colour(r.impl), marker=markers.get(r.model, "o"),
                   edgecolor="black", lw=0.5, gid=impl_gid(r.impl))
    if refs:
        ax.scatter([r[0] for r in refs], [r[1] for r in refs], marker="x", s=70, color="black", lw=2)
    handles = [Line2D([], [], color=impl_colour(i), marker="o", ls="", label=i) for i in sorted(last.impl.unique())]
    handles += [Line2D([], [], color="gray", marker=mk, ls="", label=m) for m, mk in markers.items()]
    if refs:
        handles.append(Line2D([], [], color="black", marker="x", ls="", mew=2, label="published (paper)"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set(xlabel="trainable params (M)", ylabel="final test accuracy", title="Parameters vs final test accuracy")
    s.figures.append((_save(fig, out, "params_vs_accuracy"), "parameters vs final accuracy; black crosses: published"))


def subset_notes(last: pd.DataFrame) -> list[str]:
    """One sentence per training on a subset of CIFAR-10 (the smoke and CPU fidelity runs): what it was,
    so its accuracy is never read as a result."""
    if "train_examples" not in last:
        return []
    notes = []
    sub = last[last.train_examples.notna() & (last.train_examples < 50000)]
    for (m, rec, n, e), g in sub.groupby(["model", "recipe", "train_examples", "epochs_total"]):
        accs = ", ".join(f"{impl} {a:.1%}" for impl, a in zip(g.impl, g.test_acc))
        notes.append(f"{m}: trained on the first {int(n):,} training images for {int(e)} epoch(s) (recipe '{rec}'), "
                     f"tested on a subset of the test set: a check that the trainer learns (chance is 10%), not a "
                     f"result to compare with published accuracy. Final test accuracy: {accs}.")
    return notes


def standin_check(last: pd.DataFrame) -> pd.DataFrame | None:
    """The paper-recipe ResNet-20 rows trained on a copy of CIFAR-10 (not the official files), next to the
    reference script's accuracy on that copy, and whether they reach it minus 0.5 point (issue #6)."""
    from bench.zoo.anchors import STANDIN_RESNET20
    if "data_source" not in last:
        return None
    rows = last[(last.model == "resnet20_v1") & (last.recipe == "paper") & last.precision.isin(list(STANDIN_RESNET20))
                & last.data_source.notna() & (last.data_source.astype(str) != "official")]
    if not len(rows):
        return None
    out = rows[["impl", "precision", "epoch", "epochs_total", "test_acc"]].copy()
    out["reference_acc"] = [STANDIN_RESNET20[p] for p in out.precision]
    out["reaches_reference_minus_0.5pt"] = [
        ("yes" if a >= r - 0.005 else "no") if e >= t else "unfinished"
        for a, r, e, t in zip(out.test_acc, out.reference_acc, out.epoch, out.epochs_total)]
    return out.round(4)
