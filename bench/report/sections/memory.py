"""The Memory section: allocator peaks, saved activations, their growth with batch and depth, twin ratios, memory-efficient DenseNets."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.common import (
    Section,
    _family,
    _plt,
    _reference,
    _save,
    grouped_bars,
    impl_colour,
    impl_gid,
    impl_label,
    ratio_text,
)

# what "leanest" ranks by, in order: the first measure every implementation of a model has at a common batch. The
# allocator peak of a training step (alloc_peak_mib: the same quantity in every stack, on any device); else, on a GPU
# run from before that column, the GPU allocator peak over the timed steps. Never anything else: where no measure is
# common the model is "not comparable" and the stack that lacks one says why.
LEAN_MEASURES = (("alloc_peak_mib", "allocator peak of a training step"),
                 ("peak_alloc_mib", "GPU allocator peak over the timed steps"))


# the null_reason parts (bench.stacks) that say why a stack has no allocator peak of a step on this device
LACK_MARKERS = ("no allocator peak", "no CPU allocator peak", "step memory is measured by CPU memory runs")


@dataclass
class Leanest:
    """The leanest decision for one model (``leanest_by_model``), read by the Memory section and the Scoreboard.

    Attributes:
        batch: the batch compared (the largest every implementation has the measure at); None when not comparable.
        what: the measure ranked by (LEAN_MEASURES); None when not comparable.
        column: its memory.csv column.
        ranked: (implementation, MiB, kind) lowest first; kind: runtime | compile-time | "".
        lacking: (implementation, why) for each implementation with no like measure (not comparable only).
    """

    batch: int | None = None
    what: str | None = None
    column: str | None = None
    ranked: list[tuple[str, float, str]] = field(default_factory=list)
    lacking: list[tuple[str, str]] = field(default_factory=list)


def _at_registry_depth(df: pd.DataFrame) -> pd.DataFrame:
    ok = df[df.status == "ok"].copy()
    if "depth" in ok:  # the registry's own depth, not the depth sweep's other depths
        from bench.zoo import get_spec
        ok = ok[ok.depth.isna() | (ok.depth == [get_spec(m).depth for m in ok.model])]
    return ok


def _why_lacking(g: pd.DataFrame, impl: str) -> str:
    """Why ``impl`` has no allocator peak of a step: its rows' null_reason parts that name the stack (else any)."""
    stack = impl.split(" ")[0]
    reasons = [p.strip() for r in g[g.impl == impl].null_reason.dropna().astype(str) for p in r.split(";") if p.strip()]
    mine = [p for p in reasons if p.startswith(stack + ":") and any(k in p for k in LACK_MARKERS)]
    if mine:
        return mine[0][len(stack) + 1:].strip()
    return "its rows have no alloc_peak_mib (a run from before that column, or the stack's counter failed)"


def _decide(g: pd.DataFrame) -> Leanest:
    impls = set(g.impl)
    for col, what in LEAN_MEASURES:
        if col not in g:
            continue
        have = g[g[col].notna()]
        common = have.groupby("batch_size").impl.nunique()
        full = common[common == len(impls)]
        if not len(full):
            continue
        b = int(full.index.max())
        at = have[have.batch_size == b]
        kind = at.alloc_peak_kind if "alloc_peak_kind" in at else pd.Series("", index=at.index)
        fig = at.assign(kind=kind.fillna("")).groupby("impl").agg(mib=(col, "median"), kind=("kind", "first"))
        fig = fig.sort_values("mib")
        return Leanest(b, what, col, [(i, float(r.mib), str(r.kind)) for i, r in fig.iterrows()])
    col = LEAN_MEASURES[0][0]
    have = set(g[g[col].notna()].impl) if col in g else set()
    lacking = sorted(impls - have) or sorted(impls)
    return Leanest(lacking=[(i, _why_lacking(g, i) if i not in have else "measured at no batch size the others were")
                            for i in lacking])


def leanest_by_model(df: pd.DataFrame | None) -> dict[str, Leanest]:
    """{model: Leanest}: the one place that decides which implementation is leanest (the Memory section's sentence
    and the Scoreboard's cell both read it). Per model, at its registry depth, the first measure of LEAN_MEASURES
    that every implementation measured at a common batch, at the largest such batch; the lowest median wins."""
    if df is None or not len(df) or "status" not in df:
        return {}
    ok = _at_registry_depth(df)
    if not len(ok):
        return {}
    ok["impl"] = impl_label(ok)
    if "null_reason" not in ok:
        ok["null_reason"] = None
    return {m: _decide(g) for m, g in ok.groupby("model")}


def lean_figure(impl: str, mib: float, kind: str) -> str:
    """'torch eager 12 MiB' (', compile-time' where the figure is the compiler's plan, not a run's record)."""
    return f"{impl} {mib:,.1f} MiB" + (" (compile-time)" if kind == "compile-time" else "")


def not_comparable_line(d: Leanest) -> str:
    """One line: which stack lacks a like measure, and why."""
    return "; ".join(f"{i} has no allocator peak of a training step: {why}" for i, why in d.lacking)


def leanest_sentence(df: pd.DataFrame | None) -> list[str]:
    """'Leanest per model': ``leanest_by_model``'s decision in words, the same as the Scoreboard's leanest column."""
    decided = leanest_by_model(df)
    if not decided:
        return []
    parts = []
    for m, d in decided.items():
        if d.what is None:
            parts.append(f"{m}: not comparable ({not_comparable_line(d)})")
            continue
        listed = ", ".join(lean_figure(*r) for r in d.ranked)
        parts.append(f"{m}: {d.ranked[0][0]} (batch {d.batch}, {d.what}; {len(d.ranked)} compared: {listed})")
    return ["Leanest per model (the lowest allocator peak of a training step: the most bytes the framework's "
            "allocator held during the step above what it held before it, the same quantity in every stack; the "
            "Scoreboard's leanest column reads the same decision): " + "; ".join(parts) + "."]


def concat_bytes_per_image(model: str, dtype_bytes: int = 4, **options) -> float | None:
    """Analytic size of the concatenated inputs a naive DenseNet stores per image (quadratic in block depth)."""
    from bench.zoo import get_spec
    spec = get_spec(model, **options)
    if spec.family != "densenet":
        return None
    total = 0.0
    for b, ((cin, _), n) in enumerate(zip(spec.channel_plan(), spec.blocks)):
        area = (spec.input_size / 2 ** b) ** 2
        total += sum(cin + i * spec.growth_rate for i in range(n)) * area  # layer i reads cin + i*k channels
    return total * dtype_bytes


MEMORY_COLUMNS = ("depth", "saved_activations_mib", "saved_by_kind_mib", "jax_residuals_mib", "params_mib", "grads_mib",
                  "optimizer_state_mib", "state_plus_activations_mib", "peak_over_state_activations", "params_trainable",
                  "cpu_alloc_peak_mib", "alloc_peak_mib", "alloc_peak_kind")


def _memory_rows(df: pd.DataFrame) -> pd.DataFrame:
    """ok memory rows with the implementation label, the registry depth and every memory column (older runs: NaN)."""
    from bench.zoo import get_spec
    ok = df[df.status == "ok"].copy()
    for c in MEMORY_COLUMNS:
        if c not in ok:
            ok[c] = np.nan
    ok["impl"] = impl_label(ok)
    ok["registry_depth"] = [get_spec(m).depth for m in ok.model]
    ok["depth"] = ok.depth.fillna(ok.registry_depth).astype(int)
    ok["variant"] = np.where(ok.model.str.endswith("_memeff"), "memory-efficient", "naive")
    return ok


def memory_headline(ok: pd.DataFrame, col: str = "saved_activations_mib", noun: str = "the activations") -> list[str]:
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
                parts.append(f"{d} keeps {fig[col][d] / fig[col][r]:.1f}x {noun} of {r} with "
                             f"{fig.params_trainable[d] / fig.params_trainable[r]:.2f}x its parameters")
            if d + "_memeff" in fig.index:
                parts.append(f"the memory-efficient variant keeps {100 * fig[col][d + '_memeff'] / fig[col][d]:.0f}% "
                             f"({fig[col][d + '_memeff']:,.0f} vs {fig[col][d]:,.0f} MiB)")
            if parts:
                out.append(f"{impl}, batch {b}: " + "; ".join(parts) + ".")
    return out


SAVED = "saved activations"
PEAK_OVER_STATE = "CPU allocator peak / state + saved activations"


def twin_ratios(ok: pd.DataFrame) -> pd.DataFrame:
    """Each Keras implementation's training-step memory over PyTorch's, same model / depth / batch (``measure``
    says which): saved activations over saved activations, with the per-layer-kind MiB of both and where the
    difference sits (the cause of the ratio); or, for a stack with no saved-activation figure but a CPU allocator
    peak (Keras on TensorFlow), that peak over PyTorch's weights + gradients + optimizer state + saved activations,
    the step memory PyTorch's CPU rows have (an allocator peak also counts transient buffers)."""
    from bench.core.stack_registry import REFERENCE
    rows = []
    is_ref = ok.impl.str.split(" ").str[0] == REFERENCE
    ref = ok[is_ref & ok.saved_activations_mib.notna()]
    ref = ref[ref.impl == (_reference(set(ref.impl)) or "")] if len(ref) else ref  # PyTorch eager
    for r in ok[~is_ref].itertuples():
        t = ref[(ref.model == r.model) & (ref.depth == r.depth) & (ref.batch_size == r.batch_size)]
        if not len(t):
            continue
        t = t.iloc[0]
        if pd.notna(r.saved_activations_mib):
            rows.append(_saved_ratio(r, t))
        elif pd.notna(r.cpu_alloc_peak_mib) and pd.notna(t.state_plus_activations_mib):
            rows.append({**_ratio_keys(r, t, PEAK_OVER_STATE), "impl_mib": r.cpu_alloc_peak_mib,
                         "torch_mib": t.state_plus_activations_mib,
                         "ratio": r.cpu_alloc_peak_mib / t.state_plus_activations_mib})
    return pd.DataFrame(rows)


def _ratio_keys(r, t, measure: str) -> dict:
    return {"model": r.model, "depth": r.depth, "batch_size": r.batch_size, "impl": r.impl, "torch_impl": t.impl,
            "measure": measure}


def _saved_ratio(r, t) -> dict:
    """A twin-ratio row of saved activations, with the MiB by layer kind of both and the kinds that differ most."""
    from bench.results.schema import LAYER_KINDS, parse_by_kind
    kk, kt = parse_by_kind(r.saved_by_kind_mib), parse_by_kind(t.saved_by_kind_mib)
    diff = {k: kk.get(k, 0.0) - kt.get(k, 0.0) for k in LAYER_KINDS}
    top = sorted(diff, key=lambda k: -diff[k])[:2]
    return {**_ratio_keys(r, t, SAVED), "impl_mib": r.saved_activations_mib, "torch_mib": t.saved_activations_mib,
            "ratio": r.saved_activations_mib / t.saved_activations_mib,
            **{f"{k} (impl / torch)": f"{kk.get(k, 0.0):.0f} / {kt.get(k, 0.0):.0f}" for k in LAYER_KINDS},
            "most of the difference": ", ".join(f"{k} {diff[k]:+.0f} MiB" for k in top if diff[k] > 0)}


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
    s = Section("Memory")
    s.text += leanest_sentence(run["memory"])
    df = run["memory"]
    if df is None or not len(df):
        s.text.append("No memory data in this run.")
        return s
    ok = _memory_rows(df)
    peak = ok[ok.peak_alloc_mib.notna()] if "peak_alloc_mib" in ok else ok.iloc[:0]
    act = ok[ok.saved_activations_mib.notna()]
    if not len(peak) and not len(act) and not ok[["jax_residuals_mib", "cpu_alloc_peak_mib", "alloc_peak_mib"]].notna().any().any():
        reasons = sorted(set(df.null_reason.dropna().astype(str)))
        s.text.append("No allocator peak was measured in this run: " + ("; ".join(reasons) or "all jobs failed") + ".")
        return s
    plt, sns = _plt()
    notes = _memory_notes(ok, peak)
    s.text += [t for t in notes if not t.startswith("NOTE:")]
    s.notes += [t[5:] for t in notes if t.startswith("NOTE:")]
    base = ok[ok.depth == ok.registry_depth]
    s.tables.append(_memory_table(base))
    s.text += _peak_ratio_sentence(peak)
    _batch_figures(s, base, out, plt, sns)
    _depth_figure(s, ok, act, out, plt, sns)
    _twin_cause(s, base)
    _activations_by_kind(s, base, out, plt)
    pairs = memeff_pairs(base, run.get("throughput"))
    if len(pairs):
        s.tables.append(("memory-efficient DenseNet: memory saved and time it costs", pairs.round(1)))
    else:
        s.text.append("No naive / memory-efficient DenseNet pair at the same batch size in this run.")
    return s


def _memory_notes(ok: pd.DataFrame, peak: pd.DataFrame) -> list[str]:
    """The headlines (saved activations, then the allocator peak on a GPU), what saved activations are, and why
    an implementation has none."""
    out = memory_headline(ok)
    if ok.alloc_peak_mib.notna().any():
        out += [f"Allocator peak of a step: {t}" for t in memory_headline(ok, "alloc_peak_mib", "the allocator peak")]
    if len(peak):
        out += [f"Allocator peak (GPU): {t}" for t in memory_headline(ok, "peak_alloc_mib", "the allocator peak")]
    if ok.cpu_alloc_peak_mib.notna().any():
        out += [f"CPU allocator peak: {t}" for t in memory_headline(ok, "cpu_alloc_peak_mib", "the allocator peak")]
    out.append("NOTE:allocator peak of a step (alloc_peak_mib) = the most bytes the framework's allocator held during "
               "one training step above what it held before it, in every stack on any device (torch: the profiler's "
               "allocation events; TensorFlow: its BFC allocator; JAX: the compiled step's memory_analysis(), a "
               "compile-time figure): the one figure that ranks the stacks (leanest).")
    out.append("NOTE:saved activations = the bytes one training step keeps for backward (torch autograd's saved tensors, "
               "each storage once, on any device); on a GPU the allocator peak is the primary figure and "
               "peak / (weights + gradients + optimizer state + saved activations) shows how far the two agree. "
               "CPU allocator peak = the CPU allocator's peak over one compiled training step, where the stack's CPU "
               "allocator keeps one (Keras on TensorFlow, its BFC allocator turned on for memory jobs alone): like a "
               "GPU allocator peak it counts weights, gradients, optimizer state, activations and transient buffers, "
               "so it compares with an allocator peak, not with saved activations. In the table, jax_residuals_mib "
               "counts JAX's residuals before XLA fusion, not comparable with saved_activations_mib; cpu_alloc_peak_mib "
               "is an allocator peak (CPU), comparable with peak_alloc_mib.")
    for impl, g in ok.groupby("impl"):
        if g.saved_activations_mib.isna().all():
            why = sorted({p.strip() for r in g.null_reason.dropna().astype(str) for p in r.split(";")
                          if p.strip().startswith(impl.split()[0] + ":")})
            out.append(f"{impl} rows have no saved_activations_mib: " + ("; ".join(why) or "not measured") + ".")
    return out


def _memory_table(base: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """The memory of one training step per model, implementation and batch, at the registry depth."""
    cols = ["model", "impl", "batch_size", "alloc_peak_mib", "alloc_peak_kind", "saved_activations_mib", "params_mib",
            "grads_mib", "optimizer_state_mib",
            "state_plus_activations_mib", "peak_alloc_mib", "peak_over_state_activations", "cpu_alloc_peak_mib",
            "jax_residuals_mib"]
    tbl = base[[c for c in cols if c in base]].sort_values(["model", "impl", "batch_size"])
    return ("memory of one training step (MiB; which columns compare: How to read this section)",
            tbl.dropna(axis=1, how="all").round(3))


def _peak_ratio_sentence(peak: pd.DataFrame) -> list[str]:
    """The range of allocator peak / (state + saved activations) over the GPU rows, where there is one."""
    if not (len(peak) and peak.peak_over_state_activations.notna().any()):
        return []
    r = peak.peak_over_state_activations.dropna()
    return [f"Allocator peak / (state + saved activations): {r.min():.2f} to {r.max():.2f} over {len(r)} GPU rows."]


# the quantities the memory figures plot, one figure each: (column, label, file stem of the batch figure)
QUANTITIES = (("alloc_peak_mib", "allocator peak of a step", "alloc_peak_vs_batch"),
              ("saved_activations_mib", "saved activations", "activations_vs_batch"),
              ("peak_alloc_mib", "GPU allocator peak", "memory_vs_batch"),
              ("cpu_alloc_peak_mib", "CPU allocator peak", "cpu_peak_vs_batch"))


def _batch_figures(s: Section, base: pd.DataFrame, out: Path, plt, sns) -> None:
    """Against batch size, one figure per quantity the run has (each labelled by it): saved activations, the GPU
    allocator peak, the CPU allocator peak."""
    for ycol, what, stem in QUANTITIES:
        data = base[base[ycol].notna()] if ycol in base else base.iloc[:0]
        if not len(data):
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        if data.batch_size.nunique() == 1:  # one batch (smoke): bars, the analytic concat storage as a gray tick
            caption = _batch_bars(ax, sns, data, ycol, what)
        else:
            caption = _batch_lines(ax, sns, data, ycol, what)
        s.figures.append((_save(fig, out, stem), caption))


def _batch_bars(ax, sns, data: pd.DataFrame, ycol: str, what: str) -> str:
    """One batch size: a bar per model and implementation (its colour), the analytic naive-concat storage as a dashed
    tick where a naive DenseNet has one (and said in the title only then); the caption."""
    b = int(data.batch_size.iloc[0])
    order = sorted(data.model.unique())
    agg = data.groupby(["model", "impl"])[ycol].median().reset_index()
    agg["model"] = pd.Categorical(agg.model, order, ordered=True)
    grouped_bars(ax, agg.sort_values("model").assign(model=lambda d: d.model.astype(str)), "model", ycol)
    drawn = False
    for i, m in enumerate(order):
        c = concat_bytes_per_image(m) if not m.endswith("_memeff") else None
        if c:
            ax.plot([i - 0.4, i + 0.4], [c * b / 2**20] * 2, ls="--", lw=1.5, color="black")
            ax.annotate("analytic concat", (i, c * b / 2**20), fontsize=8, color="black", ha="center", va="bottom")
            drawn = True
    ax.set(xlabel="", ylabel=f"{what} (MiB)", title=f"Training-step {what}, batch {b}"
           + (" (dashed: analytic naive-concat storage)" if drawn else ""))
    ax.title.set_fontsize(10)
    ax.tick_params(axis="x", rotation=20)
    return f"{what} at batch {b}"


def _lines(ax, data: pd.DataFrame, x: str, y: str) -> None:
    """One line per model and implementation: the implementation's colour, the model's marker and dash; a legend
    of what is drawn."""
    from matplotlib.lines import Line2D
    models = sorted(data.model.unique())
    marks = dict(zip(models, "osD^vP*Xph" * 3))
    dashes = dict(zip(models, ["-", "--", "-.", ":"] * 5))
    for (m, impl), g in data.groupby(["model", "impl"]):
        g = g.groupby(x)[y].median()
        ax.plot(g.index, g.values, ls=dashes[m], marker=marks[m], color=impl_colour(impl), gid=impl_gid(impl))
    handles = [Line2D([], [], color=impl_colour(i), lw=2, label=i) for i in sorted(data.impl.unique())]
    handles += [Line2D([], [], color="gray", ls=dashes[m], marker=marks[m], label=m) for m in models]
    ax.legend(handles=handles, fontsize=7)


def _batch_lines(ax, sns, data: pd.DataFrame, ycol: str, what: str) -> str:
    """Several batch sizes: log-log lines per model and implementation, the analytic storage dotted; the caption."""
    _lines(ax, data, "batch_size", ycol)
    naive = [m for m in sorted(data.model.unique()) if not m.endswith("_memeff")]
    _analytic(ax, naive, lambda m: sorted(data[data.model == m].batch_size.unique()),
              lambda m, b: (concat_bytes_per_image(m) or 0) * b / 2**20)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel=f"{what} (MiB)",
           title=f"Training-step {what} vs batch size (dotted: analytic naive-concat storage)")
    ax.title.set_fontsize(10)
    return f"{what} vs batch size"


def _depth_figure(s: Section, ok: pd.DataFrame, act: pd.DataFrame, out: Path, plt, sns) -> None:
    """Against depth, one figure per quantity (each labelled by it): saved activations (the GPU allocator peak
    where the run has none) and the CPU allocator peak; the depth sweep at one batch, naive vs memory-efficient
    vs ResNet, the analytic naive-concat storage dotted, and the quadratic fit."""
    first = ("saved_activations_mib", "saved activations") if len(act) else ("peak_alloc_mib", "GPU allocator peak")
    for (ycol, what), stem in ((first, "memory_vs_depth"), (("cpu_alloc_peak_mib", "CPU allocator peak"), "cpu_peak_vs_depth")):
        swept = ok[ok[ycol].notna()]
        if len(swept):
            _one_depth_figure(s, swept, ycol, what, stem, out, plt, sns)


def _one_depth_figure(s: Section, swept: pd.DataFrame, ycol: str, what: str, stem: str, out: Path, plt, sns) -> None:
    b = swept.groupby("batch_size").depth.nunique().idxmax()
    at = swept[swept.batch_size == b]
    if at.groupby(["model", "impl"]).depth.nunique().max() < 2:  # one point per line: the memory table has them
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    _lines(ax, at, "depth", ycol)
    dn = [m for m in sorted(at.model.unique()) if _family(m) == "densenet" and not m.endswith("_memeff")]
    _analytic(ax, dn, lambda m: sorted(at[at.model == m].depth.unique()),
              lambda m, d: (concat_bytes_per_image(m, depth=int(d)) or 0) * b / 2**20)
    ax.set(xlabel="depth (layers)", ylabel=f"{what} (MiB)",
           title=f"Training-step {what} vs depth, batch {b} (dotted: analytic naive-concat storage)")
    ax.title.set_fontsize(10)  # the quantity's name makes the title long
    s.figures.append((_save(fig, out, stem), f"{what} vs depth at batch {b}"))
    growth = depth_growth(at, ycol)
    if len(growth):
        s.tables.append((f"growth with depth at batch {b}: quadratic fit of {ycol} against depth", growth))
        s.notes.append("Growth with depth: a*depth^2 + b*depth + c fitted per model and implementation; quadratic_share "
                       "= a*depth^2 / fitted value at the deepest point (about 0 = linear).")


def _twin_cause(s: Section, base: pd.DataFrame) -> None:
    """The twin ratio and its cause: which layer kinds keep what (a sentence per twin, then the table)."""
    twins = twin_ratios(base)
    if not len(twins):
        return
    for r in twins.to_dict("records"):
        if r["measure"] == SAVED:
            most = r.get("most of the difference")
            s.text.append(f"{r['impl']} keeps {ratio_text(r['ratio'])}x the saved activations of {r['torch_impl']} for "
                          f"{r['model']} at batch {r['batch_size']}" + (f"; most of the difference: {most}" if most else "") + ".")
        else:
            s.text.append(f"{r['impl']}'s CPU allocator peak is {ratio_text(r['ratio'])}x the state + saved activations of "
                          f"{r['torch_impl']} for {r['model']} at batch {r['batch_size']} ({r['impl_mib']:,.0f} vs "
                          f"{r['torch_mib']:,.0f} MiB; an allocator peak also counts the step's transient buffers).")
    s.tables.append(("twin ratio of training-step memory, and where it comes from",
                     twins.round(2).assign(ratio=twins.ratio.map(ratio_text))))
    s.notes.append("Twin ratio: 'measure' says which figures are divided; for saved activations, the MiB by the layer "
                   "kind that produced each saved storage give its cause. A CPU allocator peak over state + saved "
                   "activations divides unlike measures: read it as a bound, never as a leanest verdict (the "
                   "Scoreboard says 'not comparable').")


def _activations_by_kind(s: Section, base: pd.DataFrame, out: Path, plt) -> None:
    """Stacked bars of saved activations by the layer kind that produced them, at the largest batch."""
    from bench.results.schema import LAYER_KINDS, parse_by_kind
    kinds = base[base.saved_by_kind_mib.notna()]
    if not len(kinds):
        return
    b = kinds.batch_size.max()
    kinds = kinds[kinds.batch_size == b]
    parts = pd.DataFrame([parse_by_kind(t) for t in kinds.saved_by_kind_mib], index=kinds.model + "\n" + kinds.impl)
    parts = parts.reindex(columns=list(LAYER_KINDS)).fillna(0.0).sort_index()
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(parts) + 2), 4.5))
    parts.plot.bar(stacked=True, ax=ax, width=0.75, colormap="tab10")
    ax.set(ylabel="saved activations (MiB)", xlabel="",
           title=f"Saved activations by the layer kind that produced them, batch {b}")
    ax.title.set_fontsize(10)
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.legend(fontsize=8)
    s.figures.append((_save(fig, out, "activations_by_kind"), f"saved activations by layer kind, batch {b}"))


def _time_cost(throughput: pd.DataFrame | None, naive: str, impl: str) -> tuple[float | None, str]:
    """The memory-efficient twin's train step over the naive one's, in % slower, from the run's throughput rows
    (same implementation, synthetic input, the largest batch both ran), and where it came from."""
    if throughput is None or not len(throughput):
        return None, "no throughput rows in this run"
    t = throughput[(throughput.status == "ok") & (throughput.measurement == "train") & (throughput.input == "synthetic")]
    t = t.assign(impl=impl_label(t)) if len(t) else t
    a, e = (t[(t.model == naive) & (t.impl == impl)], t[(t.model == naive + "_memeff") & (t.impl == impl)]) if len(t) \
        else (t, t)
    both = sorted(set(a.batch_size) & set(e.batch_size))
    if not both:
        return None, f"no train throughput of both {naive} and its memory-efficient twin ({impl}) in this run"
    b = both[-1]
    ma, me = a[a.batch_size == b].step_ms_median.median(), e[e.batch_size == b].step_ms_median.median()
    return 100 * (me / ma - 1), f"throughput rows, batch {b}"


def memeff_pairs(base: pd.DataFrame, throughput: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each naive model beside its memory-efficient twin (same implementation and batch): the memory it saves
    (GPU allocator peak, CPU allocator peak, saved activations) and the step time it costs, in %. Empty when the
    run has no pair."""
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
                for c, name in (("alloc_peak_mib", "step_peak"), ("peak_alloc_mib", "peak"), ("cpu_alloc_peak_mib", "cpu_peak"),
                                ("saved_activations_mib", "saved")):
                    if c in base and pd.notna(getattr(r, c)) and pd.notna(e[c]):
                        row.update({f"naive_{name}_mib": getattr(r, c), f"memeff_{name}_mib": e[c],
                                    f"{name}_memory_saved_pct": 100 * (1 - e[c] / getattr(r, c))})
                if pd.notna(r.step_ms_median) and pd.notna(e.step_ms_median):
                    row["time_cost_pct"], row["time_from"] = 100 * (e.step_ms_median / r.step_ms_median - 1), "memory rows"
                else:
                    row["time_cost_pct"], row["time_from"] = _time_cost(throughput, m, r.impl)
                pairs.append(row)
    return pd.DataFrame(pairs)


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
