"""``python -m bench.report [RUN_ID | --latest] [--compare OTHER_RUN_ID]``: results/<run_id>/ -> reports/<run_id>/.

Writes ``index.html`` (self-contained: figures embedded, opens from disk with no network),
``index.md`` (readable on a code host), and every figure as PNG and SVG. Each section renders from
whatever the run has; a missing kind of data (a CPU-only run, OOM rows) is said, not hidden.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.schema import FILES

ROOT = Path(__file__).resolve().parents[2]
TARGETS = (0.5, 0.8, 0.9)  # test accuracies for the time-to-accuracy table


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file stem, caption)


def load_run(run_dir: Path) -> dict:
    """{'meta': dict, 'throughput'|'memory'|'epochs': DataFrame or None}."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"no results directory {run_dir}")
    meta_path = run_dir / "run_meta.json"
    out = {"meta": json.loads(meta_path.read_text()) if meta_path.exists() else {}, "dir": run_dir}
    for kind in ("throughput", "memory", "epochs"):
        p = run_dir / FILES[kind]
        out[kind] = pd.read_csv(p) if p.exists() and p.stat().st_size else None
    return out


def _label(df: pd.DataFrame) -> pd.Series:
    """The implementation of a row: ``torch <exec mode>`` | ``keras/<backend> <exec mode>`` (e.g. ``torch
    step-compile``, ``keras/jax jit``): one label per framework, backend and exec mode, never pooled. A row
    without an exec mode (older runs) is labelled by framework/backend alone."""
    base = pd.Series(np.where(df.framework == "torch", "torch", "keras/" + df.backend.astype(str)), index=df.index)
    if "exec_mode" not in df or not len(df):
        return base
    mode = df.exec_mode
    return base.where(mode.isna() | (mode.astype(str) == ""), base + " " + mode.astype(str))


def _reference(impls) -> str | None:
    """The implementation every other is compared with: PyTorch eager (``torch`` in runs without exec modes)."""
    return next((c for c in ("torch eager", "torch") if c in impls), None)


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


def leanest_sentence(df: pd.DataFrame | None) -> list[str]:
    """'Which stack is leanest per model': per model, the implementation with the lowest allocator peak (GPU),
    or, where no peak was measured (a CPU), the lowest weights + gradients + optimizer state + saved
    activations (a figure only the autograd-hooked stacks have: the sentence names how many were compared),
    at the largest batch size every compared implementation of that model ran."""
    if df is None or not len(df):
        return []
    out = []
    for col, what in (("peak_alloc_mib", "lowest allocator peak, training"),
                      ("state_plus_activations_mib", "lowest state + saved activations of a training step")):
        if col not in df:
            continue
        ok = df[(df.status == "ok") & df[col].notna()].copy()
        if "depth" in ok:  # the registry's own depth, not the depth sweep's other depths
            from bench.models import get_spec
            ok = ok[ok.depth.isna() | (ok.depth == [get_spec(m).depth for m in ok.model])]
        if not len(ok):
            continue
        ok["impl"] = _label(ok)
        parts = []
        for m, g in ok.groupby("model"):
            n = g.impl.nunique()
            common = g.groupby("batch_size").impl.nunique()
            b = common[common == n].index.max() if (common == n).any() else common.idxmax()
            at = g[g.batch_size == b].groupby("impl")[col].median()
            parts.append(f"{m}: {at.idxmin()} ({at.min():,.0f} MiB at batch {b}; {len(at)} compared)")
        out.append(f"Leanest per model ({what}): " + "; ".join(parts) + ".")
        break
    return out


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


def section_environment(run: dict) -> Section:
    m = run["meta"]
    s = Section("Environment")
    v = m.get("versions", {})
    rows = [("run id", m.get("run_id")), ("suite", m.get("suite")), ("command", m.get("command")),
            ("git commit", f"{m.get('git_commit')}{' (dirty)' if m.get('git_dirty') else ''}"),
            ("device", m.get("gpu_name") or f"CPU: {m.get('cpu')} ({m.get('cpu_count')} threads)"),
            ("GPU driver / CUDA / cuDNN", f"{m.get('gpu_driver')} / {m.get('cuda')} / {m.get('cudnn')}"),
            ("python", m.get("python")), ("torch", v.get("torch")), ("keras", v.get("keras")),
            ("keras backends", ", ".join(m.get("keras_backends") or []) or m.get("keras_backend")),
            ("tensorflow", v.get("tensorflow")), ("jax", v.get("jax"))]
    s.tables.append(("", pd.DataFrame(rows, columns=["", "value"])))
    if m.get("device") == "cpu":
        s.text.append("This run had no GPU: allocator peaks and NVML figures are empty, with the reason in each row.")
    return s


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
    ok["impl"] = _label(ok)
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


def concat_bytes_per_image(model: str, dtype_bytes: int = 4, **options) -> float | None:
    """Analytic size of the concatenated inputs a naive DenseNet stores per image (quadratic in block depth)."""
    from bench.models import get_spec
    spec = get_spec(model, **options)
    if spec.family != "densenet":
        return None
    total = 0.0
    for b, ((cin, _), n) in enumerate(zip(spec.channel_plan(), spec.blocks)):
        area = (spec.input_size / 2 ** b) ** 2
        total += sum(cin + i * spec.growth_rate for i in range(n)) * area  # layer i reads cin + i*k channels
    return total * dtype_bytes


MEMORY_COLUMNS = ("depth", "saved_activations_mib", "saved_by_kind_mib", "jax_residuals_mib", "params_mib", "grads_mib",
                  "optimizer_state_mib", "state_plus_activations_mib", "peak_over_state_activations", "params_trainable")


def _memory_rows(df: pd.DataFrame) -> pd.DataFrame:
    """ok memory rows with the implementation label, the registry depth and every memory column (older runs: NaN)."""
    from bench.models import get_spec
    ok = df[df.status == "ok"].copy()
    for c in MEMORY_COLUMNS:
        if c not in ok:
            ok[c] = np.nan
    ok["impl"] = _label(ok)
    ok["registry_depth"] = [get_spec(m).depth for m in ok.model]
    ok["depth"] = ok.depth.fillna(ok.registry_depth).astype(int)
    ok["variant"] = np.where(ok.model.str.endswith("_memeff"), "memory-efficient", "naive")
    return ok


def _family(model: str) -> str:
    from bench.models import get_spec
    return get_spec(model).family


def memory_headline(ok: pd.DataFrame, col: str = "saved_activations_mib") -> list[str]:
    """One sentence per naive DenseNet of the run (at its registry depth): its activations against the ResNet
    of the closest parameter count and its memory-efficient twin, computed from the rows (same impl, batch)."""
    base = ok[(ok.depth == ok.registry_depth) & ok[col].notna()]
    out = []
    naive_dn = base[base.model.map(lambda m: _family(m) == "densenet" and not m.endswith("_memeff")).astype(bool)]
    for impl in sorted(naive_dn.impl.unique(), key=lambda i: (i != "torch", i)):  # torch first, one batch each
        b = naive_dn[naive_dn.impl == impl].batch_size.max()
        g = base[(base.impl == impl) & (base.batch_size == b)]
        fig = g.groupby("model")[[col, "params_trainable"]].median()
        resnets = [m for m in fig.index if _family(m) == "resnet" and fig.params_trainable[m] > 0]
        for d in [m for m in fig.index if _family(m) == "densenet" and not m.endswith("_memeff")]:
            parts = []
            if resnets and fig.params_trainable[d] > 0:
                r = min(resnets, key=lambda m: abs(np.log(fig.params_trainable[m] / fig.params_trainable[d])))
                parts.append(f"{d} keeps {fig[col][d] / fig[col][r]:.1f}x the activations of {r} with "
                             f"{fig.params_trainable[d] / fig.params_trainable[r]:.2f}x its parameters")
            if d + "_memeff" in fig.index:
                parts.append(f"the memory-efficient variant keeps {100 * fig[col][d + '_memeff'] / fig[col][d]:.0f}% "
                             f"({fig[col][d + '_memeff']:,.0f} vs {fig[col][d]:,.0f} MiB)")
            if parts:
                out.append(f"{impl}, batch {b}: " + "; ".join(parts) + ".")
    return out


def twin_ratios(ok: pd.DataFrame) -> pd.DataFrame:
    """Saved activations of each Keras implementation over PyTorch's, same model / depth / batch, with the
    per-layer-kind MiB of both and where the difference sits (the cause of the ratio)."""
    from bench.memory import LAYER_KINDS, parse_by_kind
    rows = []
    have = ok[ok.saved_activations_mib.notna()]
    ref = have[have.framework == "torch"]
    ref = ref[ref.impl == (_reference(set(ref.impl)) or "")] if len(ref) else ref  # PyTorch eager
    for r in have[have.framework != "torch"].itertuples():
        t = ref[(ref.model == r.model) & (ref.depth == r.depth) & (ref.batch_size == r.batch_size)]
        if not len(t):
            continue
        t = t.iloc[0]
        kk, kt = parse_by_kind(r.saved_by_kind_mib), parse_by_kind(t.saved_by_kind_mib)
        diff = {k: kk.get(k, 0.0) - kt.get(k, 0.0) for k in LAYER_KINDS}
        top = sorted(diff, key=lambda k: -diff[k])[:2]
        rows.append({"model": r.model, "depth": r.depth, "batch_size": r.batch_size, "impl": r.impl, "torch_impl": t.impl,
                     "impl_mib": r.saved_activations_mib, "torch_mib": t.saved_activations_mib,
                     "ratio": r.saved_activations_mib / t.saved_activations_mib,
                     **{f"{k} (impl / torch)": f"{kk.get(k, 0.0):.0f} / {kt.get(k, 0.0):.0f}" for k in LAYER_KINDS},
                     "most of the difference": ", ".join(f"{k} {diff[k]:+.0f} MiB" for k in top if diff[k] > 0)})
    return pd.DataFrame(rows)


def _analytic(ax, models, xs, per_x, label_at_end: bool = True) -> None:
    """Dotted gray lines of the analytic naive-concatenation storage (concat_bytes_per_image)."""
    for m in models:
        pts = [(x, per_x(m, x)) for x in xs(m)]
        pts = [(x, y) for x, y in pts if y]
        if len(pts) >= 1:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=":", color="gray", marker=".")
            if label_at_end:
                ax.annotate(f"{m}: analytic concat", pts[-1], fontsize=7, color="gray", ha="right", va="bottom")


def section_memory(run: dict, out: Path) -> Section:
    from bench.memory import LAYER_KINDS, parse_by_kind
    s = Section("Memory")
    s.text += leanest_sentence(run["memory"])
    df = run["memory"]
    if df is None or not len(df):
        s.text.append("No memory data in this run.")
        return s
    ok = _memory_rows(df)
    peak = ok[ok.peak_alloc_mib.notna()] if "peak_alloc_mib" in ok else ok.iloc[:0]
    act = ok[ok.saved_activations_mib.notna()]
    if not len(peak) and not len(act) and not ok.jax_residuals_mib.notna().any():
        reasons = sorted(set(df.null_reason.dropna().astype(str)))
        s.text.append("No allocator peak was measured in this run: " + ("; ".join(reasons) or "all jobs failed") + ".")
        return s
    plt, sns = _plt()
    s.text += memory_headline(ok)
    if len(peak):
        s.text += [f"Allocator peak (GPU): {t}" for t in memory_headline(ok, "peak_alloc_mib")]
    s.text.append("saved activations = the bytes one training step keeps for backward (torch autograd's saved tensors, "
                  "each storage once, on any device); on a GPU the allocator peak is the primary figure and "
                  "peak / (weights + gradients + optimizer state + saved activations) shows how far the two agree.")
    for impl, g in ok.groupby("impl"):
        if g.saved_activations_mib.isna().all():
            why = sorted({p.strip() for r in g.null_reason.dropna().astype(str) for p in r.split(";")
                          if p.strip().startswith(impl.split()[0] + ":")})
            s.text.append(f"{impl} rows have no saved_activations_mib: " + ("; ".join(why) or "not measured") + ".")
    base = ok[ok.depth == ok.registry_depth]
    cols = ["model", "impl", "batch_size", "saved_activations_mib", "params_mib", "grads_mib", "optimizer_state_mib",
            "state_plus_activations_mib", "peak_alloc_mib", "peak_over_state_activations", "jax_residuals_mib"]
    tbl = base[[c for c in cols if c in base]].sort_values(["model", "impl", "batch_size"])
    s.tables.append(("memory of one training step (MiB); jax_residuals_mib counts JAX's residuals before XLA fusion, "
                     "not comparable with saved_activations_mib", tbl.dropna(axis=1, how="all").round(3)))
    if len(peak) and peak.peak_over_state_activations.notna().any():
        r = peak.peak_over_state_activations.dropna()
        s.text.append(f"Allocator peak / (state + saved activations): {r.min():.2f} to {r.max():.2f} over "
                      f"{len(r)} GPU rows.")
    # activation memory (or the allocator peak where that is all there is) against batch size
    for ycol, what, stem in (("saved_activations_mib", "saved activations", "activations_vs_batch"),
                             ("peak_alloc_mib", "allocator peak", "memory_vs_batch")):
        data = base[base[ycol].notna()] if ycol in base else base.iloc[:0]
        if not len(data):
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        if data.batch_size.nunique() == 1:  # one batch (smoke): bars, the analytic concat storage as a gray tick
            b = int(data.batch_size.iloc[0])
            order = sorted(data.model.unique())
            sns.barplot(data=data, x="model", y=ycol, hue="impl", order=order, ax=ax)
            for i, m in enumerate(order):
                c = concat_bytes_per_image(m) if not m.endswith("_memeff") else None
                if c:
                    ax.plot([i - 0.4, i + 0.4], [c * b / 2**20] * 2, ls="--", lw=1.5, color="black")
                    ax.annotate("analytic concat", (i, c * b / 2**20), fontsize=8, color="black", ha="center", va="bottom")
            ax.set(xlabel="", ylabel=f"{what} (MiB)", title=f"Training-step {what}, batch {b} (dashed: analytic naive-concat "
                                                             "storage)")
            ax.tick_params(axis="x", rotation=20)
            s.figures.append((_save(fig, out, stem), f"{what} at batch {b}"))
            continue
        sns.lineplot(data=data, x="batch_size", y=ycol, hue="model", style="impl", markers=True, ax=ax)
        naive = [m for m in sorted(data.model.unique()) if not m.endswith("_memeff")]
        _analytic(ax, naive, lambda m: sorted(data[data.model == m].batch_size.unique()),
                  lambda m, b: (concat_bytes_per_image(m) or 0) * b / 2**20)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=f"{what} (MiB)",
               title=f"Training-step {what} vs batch size (dotted: analytic naive-concat storage)")
        s.figures.append((_save(fig, out, stem), f"{what} vs batch size"))
    # against depth: the depth sweep (one batch), naive vs memory-efficient vs ResNet
    ycol = "saved_activations_mib" if len(act) else "peak_alloc_mib"
    swept = ok[ok[ycol].notna()]
    if len(swept):
        b = swept.groupby("batch_size").depth.nunique().idxmax()
        at = swept[swept.batch_size == b]
        fig, ax = plt.subplots(figsize=(8, 5))
        sns.lineplot(data=at, x="depth", y=ycol, hue="model", style="impl", markers=True, ax=ax)
        dn = [m for m in sorted(at.model.unique()) if _family(m) == "densenet" and not m.endswith("_memeff")]
        _analytic(ax, dn, lambda m: sorted(at[at.model == m].depth.unique()),
                  lambda m, d: (concat_bytes_per_image(m, depth=int(d)) or 0) * b / 2**20)
        ax.set(xlabel="depth (layers)", ylabel=("saved activations" if len(act) else "allocator peak") + " (MiB)",
               title=f"Training-step memory vs depth, batch {b} (dotted: analytic naive-concat storage)")
        s.figures.append((_save(fig, out, "memory_vs_depth"), f"memory vs depth at batch {b}"))
        growth = depth_growth(at, ycol)
        if len(growth):
            s.tables.append((f"growth with depth at batch {b}: quadratic fit of {ycol} against depth; quadratic_share "
                             "= a*depth^2 / fitted value at the deepest point (about 0 = linear)", growth))
    # the twin ratio and its cause: which layer kinds keep what
    twins = twin_ratios(ok[ok.depth == ok.registry_depth])
    if len(twins):
        for r in twins.itertuples():
            s.text.append(f"{r.impl} keeps {r.ratio:.2f}x the saved activations of {r.torch_impl} for {r.model} at batch "
                          f"{r.batch_size}" + (f"; most of the difference: {r[-1]}" if r[-1] else "") + ".")
        s.tables.append(("twin ratio of saved activations and its cause: MiB by the layer kind that produced each "
                         "saved storage", twins.round(2)))
    kinds = base[base.saved_by_kind_mib.notna()]
    if len(kinds):
        b = kinds.batch_size.max()
        kinds = kinds[kinds.batch_size == b]
        parts = pd.DataFrame([parse_by_kind(t) for t in kinds.saved_by_kind_mib], index=kinds.model + "\n" + kinds.impl)
        parts = parts.reindex(columns=list(LAYER_KINDS)).fillna(0.0).sort_index()
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(parts) + 2), 4.5))
        parts.plot.bar(stacked=True, ax=ax, width=0.75)
        ax.set(ylabel="saved activations (MiB)", xlabel="",
               title=f"Saved activations by the layer kind that produced them, batch {b}")
        ax.title.set_fontsize(10)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.legend(fontsize=8)
        s.figures.append((_save(fig, out, "activations_by_kind"), f"saved activations by layer kind, batch {b}"))
    pairs = []
    for m in sorted(base.model.unique()):
        if m.endswith("_memeff"):
            continue
        eff = base[base.model == m + "_memeff"]
        for r in base[base.model == m].itertuples():
            e = eff[(eff.impl == r.impl) & (eff.batch_size == r.batch_size)]
            if len(e):
                e = e.iloc[0]
                row = {"model": m, "impl": r.impl, "batch_size": r.batch_size}
                for c, name in (("peak_alloc_mib", "peak"), ("saved_activations_mib", "saved")):
                    if c in base and pd.notna(getattr(r, c)) and pd.notna(e[c]):
                        row.update({f"naive_{name}_mib": getattr(r, c), f"memeff_{name}_mib": e[c],
                                    f"{name}_memory_saved_pct": 100 * (1 - e[c] / getattr(r, c))})
                if pd.notna(r.step_ms_median) and pd.notna(e.step_ms_median):
                    row["time_cost_pct"] = 100 * (e.step_ms_median / r.step_ms_median - 1)
                pairs.append(row)
    if pairs:
        s.tables.append(("memory-efficient DenseNet: memory saved and time it costs", pd.DataFrame(pairs).round(1)))
    else:
        s.text.append("No naive / memory-efficient DenseNet pair at the same batch size in this run.")
    return s


def depth_growth(at: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per model and impl with >= 4 depths: the quadratic fit ``a d^2 + b d + c`` of ``col`` against depth d."""
    rows = []
    for (m, impl), g in at.groupby(["model", "impl"]):
        g = g.groupby("depth")[col].median()
        if len(g) < 4:
            continue
        a, b1, c = np.polyfit(g.index.values.astype(float), g.values, 2)
        d = float(g.index.max())
        rows.append({"model": m, "impl": impl, "depths": " ".join(str(int(x)) for x in g.index), "a": a, "b": b1,
                     "c": c, "quadratic_share": a * d * d / (a * d * d + b1 * d + c)})
    return pd.DataFrame(rows).round(4)


def section_accuracy(run: dict, out: Path) -> Section:
    from bench.anchors import PAPER_ERRORS
    s = Section("Accuracy")
    df = run["epochs"]
    if df is None or not len(df) or not (df.status == "ok").any():
        s.text.append("No training in this run.")
        return s
    plt, sns = _plt()
    ok = df[df.status == "ok"].copy()
    ok["impl"] = _label(ok)
    long = ok.melt(id_vars=["model", "impl", "epoch"], value_vars=["train_acc", "test_acc"], var_name="split",
                   value_name="accuracy")
    g = sns.relplot(data=long, x="epoch", y="accuracy", hue="impl", style="split", col="model", col_wrap=3,
                    kind="line", markers=True, height=3.2, facet_kws={"sharey": False})
    g.figure.suptitle("Accuracy per epoch (Keras and PyTorch overlaid)", y=1.02)
    s.figures.append((_save(g.figure, out, "accuracy_per_epoch"), "train and test accuracy per epoch"))
    deg = ok[ok.model.isin(["plain20", "plain56", "resnet20_v1", "resnet56_v1"])].copy()
    if deg.model.nunique() >= 2:
        deg["train_error_pct"] = 100 * (1 - deg.train_acc)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        sns.lineplot(data=deg, x="epoch", y="train_error_pct", hue="model", style="impl", ax=ax)
        ax.set(title="Degradation: plain-20/56 vs ResNet-20/56 training error", ylabel="training error (%)")
        s.figures.append((_save(fig, out, "degradation"), "the degradation experiment"))
    last = ok.sort_values("epoch").groupby(["model", "impl", "recipe", "precision"]).tail(1).copy()
    from bench.models import get_entry
    last["params_m"] = [(_params(m) or 0) / 1e6 for m in last.model]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.scatterplot(data=last, x="params_m", y="test_acc", hue="model", style="impl", s=80, ax=ax)
    refs = [(p, 1 - e / 100, m) for m, (e, p, _) in PAPER_ERRORS.items() if get_entry(m)]
    ax.scatter([r[0] for r in refs], [r[1] for r in refs], marker="x", color="black", label="published (reference)")
    for p, a, m in refs:
        ax.annotate(m, (p, a), fontsize=6, color="gray")
    ax.set(xlabel="trainable params (M)", ylabel="final test accuracy", title="Parameters vs final accuracy")
    ax.legend(fontsize=7)
    s.figures.append((_save(fig, out, "params_vs_accuracy"), "parameters vs final accuracy; x = published"))
    cols = ["model", "impl", "recipe", "precision", "epoch", "epochs_total", "test_acc", "train_acc",
            "train_images_per_s"]
    tbl = last[cols].copy()
    tbl["published_acc (reference)"] = [1 - PAPER_ERRORS[m][0] / 100 if m in PAPER_ERRORS else None for m in tbl.model]
    s.tables.append(("final epoch", tbl.round(4)))
    s.text += subset_notes(last)
    standin = standin_check(last)
    if standin is not None:
        s.tables.append(("resnet20_v1, paper recipe, on the stand-in data: against the reference script "
                         "(../shared/anchors/train_resnet20.py, H100, ANCHORS.md; run it on the same machine for "
                         "the figure that counts)", standin))
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
    from bench.anchors import STANDIN_RESNET20
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
    ok["impl"] = _label(ok)
    tbl = fidelity_table(ok)
    if not len(tbl):
        s.text.append("No plan trained with two or more seeds in two implementations: no gap to set beside a spread.")
        return s
    s.text.append("Each twin trained on the same plan (same data order and augmentation per seed) with several "
                  "seeds. The spread between seeds of one framework is what chance alone moves test accuracy; "
                  "a gap between the frameworks' means within that spread is no evidence of a framework "
                  "difference (gap / spread below 1). Seeds also change the initial weights, which differ between "
                  "frameworks at one seed.")
    s.tables.append(("test accuracy per epoch: mean and spread (max - min) over seeds, per implementation, and "
                     "the gap between implementations", tbl.round(4)))
    plt, sns = _plt()
    sub = ok[ok.model.isin(tbl.model.unique())].copy()
    sub["seed"] = sub.seed.astype(int).astype(str)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=sub, x="epoch", y="test_acc", hue="impl", units="seed", estimator=None, marker="o", ax=ax,
                 alpha=0.8)
    ax.set(title="Test accuracy per epoch, one line per seed", ylabel="test accuracy")
    s.figures.append((_save(fig, out, "fidelity_per_seed"), "test accuracy per epoch, every seed of each twin"))
    return s


def _params(model: str) -> int | None:
    try:
        from bench.counts import torch_param_counts
        from bench.models import build
        return torch_param_counts(build(model, "torch"))[0]
    except ImportError:
        return None


def section_errors(run: dict) -> Section:
    s = Section("Errors and OOM")
    frames = []
    for kind in ("throughput", "memory", "epochs"):
        df = run[kind]
        if df is not None and len(df):
            bad = df[df.status != "ok"]
            if len(bad):
                frames.append(bad.assign(csv=kind)[["csv", "job_id", "status", "error", "null_reason"]])
    if frames:
        s.tables.append(("rows that are not ok (kept in the CSVs)", pd.concat(frames)))
    else:
        s.text.append("Every job finished ok.")
    return s


def section_compare(run: dict, other: dict, out: Path) -> Section:
    s = Section(f"Compared with {other['meta'].get('run_id', other['dir'].name)}")
    keys = ["model", "framework", "backend", "measurement", "precision", "batch_size", "input"]
    a, b = run["throughput"], other["throughput"]
    if a is None or b is None:
        s.text.append("One of the runs has no throughput data.")
        return s
    a, b = a[a.status == "ok"], b[b.status == "ok"]
    m = a.merge(b, on=keys, suffixes=("", "_other"))[keys + ["images_per_s", "images_per_s_other"]]
    if not len(m):
        s.text.append("No throughput job in common.")
        return s
    m["ratio"] = m.images_per_s / m.images_per_s_other
    s.tables.append(("images/s, this run / the other (1.0 = same)", m.round(3)))
    plt, sns = _plt()
    m["job"] = m.model + " " + m.framework + " " + m.measurement + " b" + m.batch_size.astype(str)
    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(m))))
    sns.barplot(data=m, y="job", x="ratio", ax=ax, color="steelblue")
    ax.axvline(1.0, color="black", lw=1)
    ax.set(title="Throughput ratio to the compared run", xlabel="this / other")
    s.figures.append((_save(fig, out, "compare_throughput"), "throughput ratio to the compared run"))
    return s


def render(run_dir: Path, out_dir: Path, compare_dir: Path | None = None) -> Path:
    """Render the report of ``run_dir`` into ``out_dir``; returns the path of index.html."""
    run = load_run(run_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = [section_environment(run), section_throughput(run, out_dir), section_memory(run, out_dir),
                section_accuracy(run, out_dir), section_fidelity(run, out_dir), section_errors(run)]
    if compare_dir is not None:
        sections.append(section_compare(run, load_run(compare_dir), out_dir))
    title = f"TwinBench report: {run['meta'].get('run_id', Path(run_dir).name)}"
    from bench.writes import write_text_atomic  # a full disk leaves the previous page, never half of one
    write_text_atomic(out_dir / "index.md", _markdown(title, sections))
    write_text_atomic(out_dir / "index.html", _html(title, sections, out_dir))
    return out_dir / "index.html"


def _markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        lines += [t + "\n" for t in s.text]
        for stem, cap in s.figures:
            lines += [f"![{cap}]({stem}.png)", f"*{cap}* ([SVG]({stem}.svg))", ""]
        for cap, df in s.tables:
            if cap:
                lines.append(f"**{cap}**\n")
            lines += [_md_table(df), ""]
    return "\n".join(lines)


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


def _html(title: str, sections: list[Section], out_dir: Path) -> str:
    css = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
           "padding:3px 7px;text-align:right}th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
           "figure{margin:1em 0}figcaption{color:#555;font-size:13px}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(t)}</p>" for t in s.text]
        for stem, cap in s.figures:
            data = base64.b64encode((out_dir / f"{stem}.png").read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(cap)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(cap)} (<a href='{stem}.svg'>SVG</a>)</figcaption></figure>")
        for cap, df in s.tables:
            if cap:
                parts.append(f"<p><b>{html.escape(cap)}</b></p>")
            parts.append(df.to_html(index=False, na_rep="", border=0))
    parts.append("</body></html>")
    return "\n".join(parts)


def latest_run(results: Path) -> Path:
    runs = sorted(p for p in results.iterdir() if (p / "run_meta.json").exists()) if results.exists() else []
    if not runs:
        raise FileNotFoundError(f"no runs under {results}: run `python -m bench.run --suite smoke` first")
    return max(runs, key=lambda p: p.stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description="Render results/<run_id>/ into reports/<run_id>/.")
    ap.add_argument("run_id", nargs="?", help="run id under --results, or a path to a results directory")
    ap.add_argument("--latest", action="store_true", help="the most recent run")
    ap.add_argument("--compare", metavar="OTHER_RUN_ID", help="a second run to compare with (ratios, side by side)")
    ap.add_argument("--results", default=str(ROOT / "results"), help="results root (default: results/)")
    ap.add_argument("--out", default=str(ROOT / "reports"), help="reports root (default: reports/)")
    args = ap.parse_args(argv)
    results = Path(args.results)

    def resolve(r: str) -> Path:
        p = Path(r)
        return p if p.is_dir() else results / r

    try:
        run_dir = latest_run(results) if (args.latest or not args.run_id) else resolve(args.run_id)
        other = resolve(args.compare) if args.compare else None
        for d in filter(None, (run_dir, other)):
            if not d.is_dir():
                raise FileNotFoundError(f"no results directory {d}")
            if not (d / "run_meta.json").is_file():
                raise FileNotFoundError(f"{d} is not a TwinBench results directory (no run_meta.json): give a "
                                        "results/<run_id>/ folder written by python -m bench.run")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        path = render(run_dir, Path(args.out) / run_dir.name, other)
    except OSError as e:  # disk full / not writable: one sentence, not a traceback
        print(f"error: could not write the report into {Path(args.out) / run_dir.name} "
              f"({e.strerror or e}): free space or give --out elsewhere", file=sys.stderr)
        return 3
    print(path)
    return 0

