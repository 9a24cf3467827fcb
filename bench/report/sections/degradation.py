"""The Degradation section: the ResNet paper's Figure 1/6 from our rows (plain-20/56 vs ResNet-20/56), the one
sentence saying what the run shows, and the price of depth (parameters, images/s, memory) from the same run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section, _plt, _reference, _save, impl_label

PLAIN = ("plain20", "plain56")
RESIDUAL = ("resnet20_v1", "resnet56_v1")
MODELS = PLAIN + RESIDUAL
LABEL = {"plain20": "plain-20", "plain56": "plain-56", "resnet20_v1": "ResNet-20", "resnet56_v1": "ResNet-56"}
COLOUR = {20: "tab:blue", 56: "tab:red"}  # one colour per depth, in both panels
DASH = {"train": "--", "test": "-"}  # the paper's figure: training error dashed, test error solid
PAPER_RECIPE = (164, 50000)  # epochs, training images of the paper's CIFAR-10 runs


def _depth(model: str) -> int:
    return 56 if "56" in model else 20


def _prepare(ok: pd.DataFrame) -> pd.DataFrame:
    """The four nets' rows with ``impl`` (added when missing), ``seed`` (0 when missing) and errors in %."""
    d = ok[ok.model.isin(MODELS)].copy()
    if "impl" not in d:
        d["impl"] = impl_label(d) if len(d) else pd.Series(dtype=object)
    d["seed"] = d.seed.fillna(0).astype(int) if "seed" in d else 0
    d["train_error_pct"] = 100 * (1 - d.train_acc)
    d["test_error_pct"] = 100 * (1 - d.test_acc)
    return d


def degradation_series(ok: pd.DataFrame) -> pd.DataFrame:
    """What the figure plots, long: one series per (impl, model, phase), the error (%) per epoch averaged over
    seeds, with the seeds' min and max (the band drawn when there are several)."""
    d = _prepare(ok)
    long = d.melt(id_vars=["impl", "model", "epoch", "seed"], value_vars=["train_error_pct", "test_error_pct"],
                  var_name="phase", value_name="error_pct")
    long["phase"] = long.phase.str.removesuffix("_error_pct")
    g = long.groupby(["impl", "model", "phase", "epoch"]).error_pct
    out = g.agg(["mean", "min", "max", "count"]).reset_index()
    return out.rename(columns={"mean": "error_pct", "min": "error_min", "max": "error_max", "count": "seeds"})


def draw_degradation(series: pd.DataFrame):
    """The paper's figure from ``degradation_series``: a row of two panels per implementation, plain nets left,
    residual nets right, one colour per depth, training error dashed and test error solid. Every plotted series
    is a Line2D with gid ``series``; the published errors (reference) are dotted lines with gid ``reference``.
    Returns the matplotlib figure (not saved: tests inspect its axes)."""
    from matplotlib.ticker import MaxNLocator

    from bench.zoo.anchors import PAPER_ERRORS
    plt, _ = _plt()
    impls = sorted(dict.fromkeys(series.impl), key=lambda i: (i != _reference(series.impl.unique()), i))
    fig, axes = plt.subplots(len(impls), 2, figsize=(10, 3.6 * len(impls)), sharey=True, squeeze=False)
    for row, impl in zip(axes, impls):
        for ax, nets, title in ((row[0], PLAIN, "plain nets"), (row[1], RESIDUAL, "residual nets (ResNet)")):
            for (model, phase), s in series[(series.impl == impl) & series.model.isin(nets)].groupby(["model", "phase"]):
                s = s.sort_values("epoch")
                ax.plot(s.epoch, s.error_pct, DASH[phase], color=COLOUR[_depth(model)], marker="o", ms=3,
                        label=f"{LABEL[model]} {phase}", gid="series")
                if s.seeds.max() > 1:
                    ax.fill_between(s.epoch, s.error_min, s.error_max, color=COLOUR[_depth(model)], alpha=0.15, lw=0)
            ax.set(title=f"{impl}: {title}", xlabel="epoch", ylabel="error (%)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for m in RESIDUAL:
            if m in PAPER_ERRORS and (series.model == m).any():
                row[1].axhline(PAPER_ERRORS[m][0], ls=":", lw=1, color=COLOUR[_depth(m)], gid="reference",
                               label=f"{LABEL[m]} published test error {PAPER_ERRORS[m][0]}% (reference)")
        row[0].text(0.02, 0.02, "paper (reference): plain-56 above plain-20 in both errors", fontsize=7,
                    color="gray", transform=row[0].transAxes)
        for ax in row:
            if ax.lines:
                ax.legend(fontsize=7, handlelength=4)  # long enough to show a dashed line as dashed
    fig.suptitle("Degradation: training error (dashed) and test error (solid) per epoch", y=1.0)
    return fig


def final_errors(ok: pd.DataFrame) -> pd.DataFrame:
    """Per (impl, model): the last epoch of each seed's training, then the mean over seeds of the training and
    test error (%) and their spread between seeds (max - min; empty with one seed: no spread was measured)."""
    d = _prepare(ok)
    last = d.sort_values("epoch").groupby(["impl", "model", "seed"]).tail(1)
    rows = []
    for (impl, model), g in last.groupby(["impl", "model"]):
        spread = (lambda col: col.max() - col.min()) if len(g) > 1 else (lambda col: None)
        rows.append({"impl": impl, "model": model, "seeds": len(g), "epoch": int(g.epoch.min()),
                     "epochs_total": int(g.epochs_total.max()) if "epochs_total" in g else None,
                     "train_examples": g.train_examples.max() if "train_examples" in g else None,
                     "train_error_pct": g.train_error_pct.mean(), "train_spread_pct": spread(g.train_error_pct),
                     "test_error_pct": g.test_error_pct.mean(), "test_spread_pct": spread(g.test_error_pct)})
    return pd.DataFrame(rows)


def _gap(f: pd.DataFrame, deep: str, shallow: str) -> tuple[float, float | None, pd.Series, pd.Series]:
    """(deep - shallow final training error in points, the larger seed spread of the two or None with one seed,
    the deep row, the shallow row)."""
    a, b = f.loc[deep], f.loc[shallow]
    spread = max(a.train_spread_pct, b.train_spread_pct) if min(a.seeds, b.seeds) > 1 else None
    return a.train_error_pct - b.train_error_pct, spread, a, b


def _against(gap: float, spread: float | None) -> str:
    if spread is None:
        return "one seed, no spread between seeds to judge it against"
    if spread == 0:
        return "the seeds agree exactly"
    return f"{abs(gap) / spread:.1f}x the larger spread between seeds ({spread:.2f} points)"


def _pair(d: pd.DataFrame, pair: tuple[str, str]) -> tuple[pd.DataFrame | None, str]:
    """The final errors of a pair of nets (rows of ``_prepare``) at the last epoch every seed of both reached (an
    interrupted run compares like with like), and how to say when: 'ends' or 'is, at epoch k ...,'."""
    d = d[d.model.isin(pair)]
    if d.model.nunique() < 2:
        return None, ""
    last = d.groupby(["model", "seed"]).epoch.max()
    k = int(last.min())
    total = int(d.epochs_total.max()) if "epochs_total" in d and d.epochs_total.notna().any() else k
    when = "ends" if k >= total else f"is, at epoch {k} (the last both reached; {total} planned),"
    return final_errors(d[d.epoch <= k]).set_index("model"), when


def _plain_clause(f: pd.DataFrame | None, when: str) -> str:
    if f is None:
        return "plain-20 and plain-56 were not both trained, so this run cannot show the degradation"
    gap, spread, a, b = _gap(f, "plain56", "plain20")
    errs = (f"(training error {a.train_error_pct:.2f}% vs {b.train_error_pct:.2f}%; test error "
            f"{a.test_error_pct:.2f}% vs {b.test_error_pct:.2f}%)")
    if gap > 0 and (spread is None or gap > spread):
        return (f"plain-56 {when} above plain-20 in training error by {gap:.2f} points {errs}, "
                f"{_against(gap, spread)}: the degradation the paper reports")
    if gap > 0:
        return (f"plain-56 {when} above plain-20 in training error by {gap:.2f} points {errs}, within the spread "
                f"between seeds ({spread:.2f} points): this run does not show the degradation")
    return (f"plain-56 {when} at or below plain-20 in training error (by {-gap:.2f} points) {errs}: this run does "
            "not show the degradation the paper reports")


def _residual_clause(f: pd.DataFrame | None, when: str) -> str:
    if f is None:
        return "ResNet-20 and ResNet-56 were not both trained"
    gap, spread, a, b = _gap(f, "resnet56_v1", "resnet20_v1")
    errs = f"({a.train_error_pct:.2f}% vs {b.train_error_pct:.2f}%)"
    if gap <= 0:
        return (f"ResNet-56's training error {when} at or below ResNet-20's {errs}, by {-gap:.2f} points: in this "
                "run depth does not hurt the residual nets")
    if spread is not None and gap <= spread:
        return (f"ResNet-56's training error {when} {gap:.2f} points above ResNet-20's {errs}, within the spread "
                f"between seeds ({spread:.2f} points): at ResNet-20's level")
    return (f"ResNet-56's training error {when} {gap:.2f} points above ResNet-20's {errs}, {_against(gap, spread)}: "
            "in this run the shortcuts do not make the deeper net train better")


def _scope(d: pd.DataFrame) -> str:
    """'After N epoch(s) on M images, S seed(s) (...)': what training the sentence is about."""
    done = int(d.epoch.max())
    total = int(d.epochs_total.max()) if "epochs_total" in d and d.epochs_total.notna().any() else done
    n = d.train_examples.max() if "train_examples" in d and d.train_examples.notna().any() else None
    images = f"{int(n):,} training images" if n and n < PAPER_RECIPE[1] else "all of CIFAR-10"
    short = total < PAPER_RECIPE[0] or (n is not None and n < PAPER_RECIPE[1])
    seeds = int(d.groupby("model").seed.nunique().min())
    finished = int(d.groupby(["model", "seed"]).epoch.max().min()) >= total  # every training ran all its epochs
    return ((f"After {total} epoch(s)" if finished else f"After up to {done} of {total} planned epoch(s) "
             "(unfinished)") + f" on {images}, {seeds} seed(s)"
            + (" (a short run, not the paper's 164 epochs on 50,000 images)" if short else ""))


def degradation_sentence(rows: pd.DataFrame) -> str:
    """The one sentence saying what the epochs ``rows`` of one implementation show: whether plain-56's final
    training error is above plain-20's, and by how much against the spread between seeds (where there are
    several); whether ResNet-56's is at or below ResNet-20's. A pair whose trainings stopped at different epochs
    is compared at the last epoch both reached. Nothing the rows do not show."""
    d = _prepare(rows)
    if not len(d):
        return "None of plain-20, plain-56, ResNet-20, ResNet-56 was trained in this run."
    return f"{_scope(d)}: {_plain_clause(*_pair(d, PLAIN))}; {_residual_clause(*_pair(d, RESIDUAL))}."


def depth_cost(run: dict, finals: pd.DataFrame) -> pd.DataFrame:
    """The price of depth per net and implementation, from the same run: parameters, training images/s (the
    one-batch throughput job), saved activations and state + activations (the memory job), beside the final
    errors the depth bought."""
    from bench.core.stack_registry import stack_name

    def keyed(df: pd.DataFrame | None, cols: list[str], where=None) -> pd.DataFrame:
        if df is None or not len(df):
            return pd.DataFrame(columns=["model", "stack", *cols])
        d = df[(df.status == "ok") & df.model.isin(MODELS) & (df.measurement == "train")]
        if where is not None:
            d = d[where(d)]
        d = d.assign(stack=[stack_name(f, b) for f, b in zip(d.framework, d.backend.astype(str))])
        return d[["model", "stack", *[c for c in cols if c in d]]].drop_duplicates(["model", "stack"])

    tp = keyed(run.get("throughput"), ["params_trainable", "batch_size", "images_per_s"],
               lambda d: d.input == "synthetic" if "input" in d else d.model.notna())
    mem = keyed(run.get("memory"), ["saved_activations_mib", "state_plus_activations_mib"])
    out = tp.rename(columns={"batch_size": "batch"}).merge(mem, on=["model", "stack"], how="outer")
    if len(finals):
        fe = finals.assign(stack=finals.impl.str.split(" ").str[0])[["model", "stack", "train_error_pct", "test_error_pct"]]
        out = out.merge(fe.drop_duplicates(["model", "stack"]), on=["model", "stack"], how="outer")
    if not len(out):
        return out
    out["model"] = pd.Categorical(out.model, MODELS, ordered=True)
    out = out.sort_values(["stack", "model"]).rename(columns={
        "params_trainable": "params", "images_per_s": "train images/s", "saved_activations_mib": "saved activations MiB",
        "state_plus_activations_mib": "state+activations MiB", "train_error_pct": "final train error %",
        "test_error_pct": "final test error %"})
    out["model"] = out.model.astype(str)
    return out.round(2)


def _final_table(finals: pd.DataFrame) -> pd.DataFrame:
    from bench.zoo.anchors import PAPER_ERRORS
    t = finals[["model", "impl", "seeds", "epoch", "epochs_total", "train_error_pct", "train_spread_pct",
                "test_error_pct", "test_spread_pct"]].copy()
    t["published test error % (reference)"] = [
        PAPER_ERRORS[m][0] if m in PAPER_ERRORS else "above plain-20 (Fig. 6)" if m == "plain56" else ""
        for m in t.model]
    return t.round(2)


def section_degradation(run: dict, out: Path) -> Section:
    """The paper's degradation figure from this run's rows, the sentence, the final errors and the price of depth."""
    s = Section("Degradation")
    df = run["epochs"]
    ok = df[(df.status == "ok") & df.model.isin(MODELS)].copy() if df is not None and len(df) else None
    if ok is None or ok.model.nunique() < 2:
        s.text.append("Fewer than two of plain-20, plain-56, ResNet-20, ResNet-56 trained in this run: no degradation "
                      "figure (the `degradation` suite trains all four on one plan).")
        return s
    ok["impl"] = impl_label(ok)
    s.text.append("The ResNet paper's degradation experiment (Fig. 1 and 6) from this run: the four nets trained on one "
                  "plan (the same batches and augmentation, seed for seed). The paper reports plain-56 above plain-20 in "
                  "both training and test error, and ResNet-56 below ResNet-20 (6.97% vs 8.75% test error); those are "
                  "published figures, drawn as reference, not results of this run. Training error is measured over the "
                  "augmented batches while the epoch trains, as in the paper's curves.")
    s.text += [f"{impl}: {degradation_sentence(g)}" for impl, g in ok.groupby("impl")]
    fig = draw_degradation(degradation_series(ok))
    s.figures.append((_save(fig, out, "degradation"), "training error (dashed) and test error (solid) per epoch; "
                      "plain nets left, residual nets right; dotted: published test error (reference)"))
    finals = final_errors(ok)
    s.tables.append(("final errors (mean over seeds; spread = max - min between seeds)", _final_table(finals)))
    cost = depth_cost(run, finals)
    if len(cost):
        s.tables.append(("the price of depth, from this run: parameters, training images/s at one batch, memory one "
                         "training step keeps (empty: not measured for that stack; see the Memory section)", cost))
    return s
