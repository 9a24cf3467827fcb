"""The "Where the time goes" section: each implementation's profiled train step split by layer kind and
phase, the twins' largest per-layer differences, and the layer kind that explains most of the gap between
the fastest and the slowest implementation of each model (``profile.csv``, ``bench.measures.profile``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Link, Section, _plt, _reference, _save, at_registry_depth, bring, impl_label
from bench.results.schema import PROFILE_KINDS, PROFILE_STEP_ROW

UNATTRIBUTED = "(unattributed)"
SMALL_SHARE = 0.005  # a kind / phase below this share of every bar joins one "rest" segment (no legend entry unseen)
KEYS = ["model", "precision", "batch_size"]


def _split(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary rows, layer rows) of the ok profile rows, each with its implementation label."""
    ok = ok.assign(impl=impl_label(ok))
    return ok[ok.layer == PROFILE_STEP_ROW], ok[ok.layer != PROFILE_STEP_ROW]


def _bucket(layers: pd.DataFrame) -> pd.Series:
    """The segment of a layer row in the stacked bars: ``<kind> <phase>``, or optimizer / loss / unattributed."""
    seg = layers.kind.astype(str) + " " + layers.phase.astype(str)
    seg = seg.where(layers.layer != UNATTRIBUTED, "unattributed")
    seg = seg.where(layers.layer != "(optimizer)", "optimizer")
    return seg.where(layers.layer != "(loss)", "loss")


def gap_sentences(steps: pd.DataFrame, layers: pd.DataFrame) -> list[str]:
    """Per model: the fastest and slowest implementation (profiled step) and the layer kind (all phases; the
    unattributed time as its own) whose time differs most between them, with its share of the gap."""
    out = []
    for key, g in steps.dropna(subset=["coverage"]).groupby(KEYS):
        if g.impl.nunique() < 2:
            continue
        fast, slow = g.loc[g.profiled_step_ms.idxmin()], g.loc[g.profiled_step_ms.idxmax()]
        lay = layers[(layers.model == key[0]) & (layers.precision == key[1]) & (layers.batch_size == key[2])]
        kind = lay.kind.where(lay.layer != UNATTRIBUTED, UNATTRIBUTED)
        per = lay.assign(k=kind).groupby(["impl", "k"]).ms_per_step.sum().unstack(fill_value=0.0)
        if fast.impl not in per.index or slow.impl not in per.index:
            continue
        diff = per.loc[slow.impl] - per.loc[fast.impl]
        gap = slow.profiled_step_ms - fast.profiled_step_ms
        if gap <= 0:
            out.append(f"{key[0]}: {slow.impl} and {fast.impl} profile at the same step time.")
            continue
        top = diff.idxmax()
        why = f"{top} explains most of the {gap:.1f} ms gap ({diff[top]:.1f} ms, {diff[top] / gap:.0%})"
        if top == UNATTRIBUTED:  # time no layer could be named for: say so, then name the layer kind that leads
            named = diff.drop(UNATTRIBUTED)
            why = (f"most of the {gap:.1f} ms gap ({diff[top]:.1f} ms, {diff[top] / gap:.0%}) is time the profiler could "
                   f"not attribute to a layer (coverage {slow.coverage:.0%} vs {fast.coverage:.0%})")
            if len(named) and named.max() > 0:
                k = named.idxmax()
                why += f"; of the attributed time, {k} differs most ({named[k]:.1f} ms, {named[k] / gap:.0%})"
        out.append(f"{key[0]} (batch {key[2]}): {slow.impl} is the slowest profiled step ({slow.profiled_step_ms:.1f} ms) "
                   f"and {fast.impl} the fastest ({fast.profiled_step_ms:.1f} ms); {why}.")
    return out


def summary_table(steps: pd.DataFrame, run_dir: Path | None, out: Path) -> pd.DataFrame:
    """One row per profiled implementation: step times, overhead, coverage, fused share, the trace (a link)."""
    def link(p):
        if not isinstance(p, str) or not p:
            return ""
        if p in gone:  # moved or deleted since the run: no dead link
            return f"{Path(p).name} (missing)"
        return Link(Path(p).name, bring(run_dir, p, out))  # inside the report folder: a copied report keeps it
    gone = [p for p in dict.fromkeys(steps.trace_path) if isinstance(p, str) and p and run_dir is not None
            and not (Path(run_dir) / p).exists()]
    if gone:
        from bench.results.read import note
        note(f"{len(gone)} trace(s) that profile rows of {run_dir} name are gone ({', '.join(gone)}): the report "
             "lists them without a link")
    depth = ["depth"] if "depth" in steps else []
    t = steps[KEYS + depth + ["impl", "profiled_step_ms", "unprofiled_step_ms", "profiler_overhead", "coverage", "fused_share",
                      "trace_path", "null_reason"]].copy()
    t["trace_path"] = t.trace_path.map(link)
    return t.rename(columns={"trace_path": "trace"}).round(3)


def layer_diffs(layers: pd.DataFrame, ref: str, other: str, n: int = 12) -> pd.DataFrame:
    """The ``n`` layers (summed over kinds, per phase) whose time differs most between two implementations."""
    named = layers[~layers.layer.isin([UNATTRIBUTED])]
    per = named.groupby(["layer", "phase", "impl"]).agg(ms=("ms_per_step", "sum"), kind=("kind", "first")).reset_index()
    a = per[per.impl == ref].set_index(["layer", "phase"])
    b = per[per.impl == other].set_index(["layer", "phase"])
    j = a[["kind", "ms"]].join(b[["ms"]], how="inner", lsuffix=f" {ref}", rsuffix=f" {other}")
    if not len(j):
        return j
    j["ratio"] = j[f"ms {other}"] / j[f"ms {ref}"].where(j[f"ms {ref}"] > 0)
    j = j.assign(diff=(j[f"ms {other}"] - j[f"ms {ref}"]).abs()).sort_values("diff", ascending=False).head(n)
    return j.drop(columns="diff").reset_index().round(3)


def _figure(layers: pd.DataFrame, out: Path, s: Section) -> None:
    """Stacked bars, one per implementation, the twins of a model side by side: the share of the profiled step by
    kind and phase (the bar's label gives the step's ms, so the split reads the same at any speed)."""
    plt, _ = _plt()
    seg = layers.assign(seg=_bucket(layers)).groupby(["model", "impl", "seg"]).ms_per_step.sum().unstack(fill_value=0.0)
    step_ms = seg.sum(axis=1)
    seg = seg.div(step_ms, axis=0)
    order = [f"{k} {p}" for p in ("forward", "backward", "recompute") for k in PROFILE_KINDS]
    cols = [c for c in order if c in seg.columns] + [c for c in ("loss", "optimizer", "unattributed") if c in seg.columns]
    cols += [c for c in seg.columns if c not in cols]
    seg = seg[cols]
    small = [c for c in cols if seg[c].max() < SMALL_SHARE]  # too thin to see: one segment, named as such
    if small:
        seg = seg.drop(columns=small).assign(**{f"rest (each < {SMALL_SHARE:.1%})": seg[small].sum(axis=1)})
        cols = list(seg.columns)
    models = list(dict.fromkeys(seg.index.get_level_values(0)))
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 1.2 + 0.55 * len(seg)), squeeze=False)
    cmap = plt.get_cmap("tab20")
    colors = {c: cmap(i % 20) for i, c in enumerate(cols)}
    for ax, m in zip(axes[:, 0], models):
        part = seg.loc[m]
        names = [f"{i} ({step_ms.loc[(m, i)]:.1f} ms)" for i in part.index]
        left = pd.Series(0.0, index=part.index)
        for c in cols:
            ax.barh(names, part[c].values, left=left.values, color=colors[c], label=c,
                    hatch="//" if "backward" in c else ("xx" if "recompute" in c else None))
            left += part[c]
        ax.set(title=m, xlabel="share of the profiled step", xlim=(0, 1))
    rows = -(-len(cols) // 5)
    height = 1.0 + 0.45 * len(seg) + 0.7 * len(models) + 0.25 * rows
    fig.set_size_inches(10, height)
    handles, labels = axes[-1, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.25 * rows / height + 0.02, 1, 1))
    s.figures.append((_save(fig, out, "profile_split", tight=False), "share of the profiled train step by layer kind "
                      "and phase (hatched: backward, crossed: recompute)"))


def densenet_table(steps: pd.DataFrame, layers: pd.DataFrame) -> pd.DataFrame:
    """DenseNet rows per implementation and depth: the share of the profiled step in concatenation (its forward,
    backward and recompute) and in recompute, and the memory-efficient twin's step over the naive one's."""
    if "depth" not in steps:
        return pd.DataFrame()
    dense = steps[steps.model.str.startswith("densenet")].dropna(subset=["coverage"])
    if not len(dense):
        return pd.DataFrame()
    keys = ["model", "impl", "batch_size", "depth"]
    lay = layers[layers.model.str.startswith("densenet")]
    concat = lay[lay.kind == "concat"].groupby(keys).ms_per_step.sum().rename("concat_ms")
    rec = lay[lay.phase == "recompute"].groupby(keys).ms_per_step.sum().rename("recompute_ms")
    t = dense.set_index(keys)[["profiled_step_ms"]].join(concat).join(rec).fillna({"concat_ms": 0.0, "recompute_ms": 0.0})
    t["concat_share"] = t.concat_ms / t.profiled_step_ms
    t["recompute_share"] = t.recompute_ms / t.profiled_step_ms
    t = t.reset_index()
    t["naive"] = t.model.str.removesuffix("_memeff")
    naive = t[t.model == t.naive].set_index(["naive", "impl", "batch_size", "depth"]).profiled_step_ms
    idx = pd.MultiIndex.from_frame(t[["naive", "impl", "batch_size", "depth"]])
    t["step_over_naive"] = (t.profiled_step_ms.values / naive.reindex(idx).values)
    t.loc[t.model == t.naive, "step_over_naive"] = None
    return t.drop(columns="naive").sort_values(["model", "impl", "depth"]).round(3)


def section_profile(run: dict, out: Path) -> Section:
    s = Section("Where the time goes")
    df = run.get("profile")
    if df is None or not len(df):
        s.text.append("No profile jobs in this run (python -m bench.profile MODEL, or the profile suite).")
        return s
    steps, layers = _split(df[df.status == "ok"])
    if not len(steps):
        s.text.append("Every profile job failed (see Errors).")
        return s
    main = at_registry_depth(steps)
    s.text += gap_sentences(steps[main], layers[at_registry_depth(layers)])
    s.notes.append("Each layer's own time per profiled step (nested layers excluded); backward time is the layer's whose "
                  "forward created it; coverage is the share of the step attributed to a named layer, the loss or the "
                  "optimizer, the rest is (unattributed). Profiled steps run slower than unprofiled ones "
                  "(profiler_overhead); on a shared CPU every figure is contended.")
    s.tables.append(("Profiled implementations (traces: Perfetto, chrome://tracing; .xplane.pb: TensorBoard)",
                     summary_table(steps, run.get("dir"), out)))
    dense = densenet_table(steps, layers)
    if len(dense):
        from bench.zoo.anchors import MEMEFF_TIME
        s.tables.append(("DenseNet: concatenation and recompute share of the step against depth", dense))
        s.notes.append(f"step_over_naive: the memory-efficient twin's profiled step over the naive one's ({MEMEFF_TIME}; "
                       "what it saves in memory is in the Memory section).")
    layers_main = layers[at_registry_depth(layers)]
    if len(layers_main):
        layers = layers_main
        _figure(layers, out, s)
        for model, g in layers.groupby("model"):
            impls = list(dict.fromkeys(g.impl))
            ref = _reference(set(impls)) or impls[0]
            for other in (i for i in impls if i != ref):
                t = layer_diffs(g, ref, other)
                if len(t):
                    s.tables.append((f"{model}: largest per-layer differences, {other} vs {ref} (ms per step)", t))
    _roofline_parts(run, out, s)
    return s


ROOFLINE_COLUMNS = ["model", "batch_size", "impl", "layer_kind", "phase", "ms_per_step", "gflop_per_step",
                    "mbytes_per_step", "intensity_flop_per_byte", "achieved_gflops", "achieved_gbs", "t_min_ms",
                    "efficiency", "bound"]


def _roofline_parts(run: dict, out: Path, s: Section) -> None:
    """How far from the limit: which kinds are memory-bound and what their bytes cost, a roofline per model, the
    joined table (``bench.report.sections.roofline``)."""
    from bench.report.sections.roofline import figure, memory_sentences, roofline_rows, roofs_line
    rl = roofline_rows(run)
    if not len(rl):
        return
    s.text += memory_sentences(rl)
    for model in dict.fromkeys(rl.model):
        fig = figure(rl, run, model, out)
        if fig:
            s.figures.append(fig)
    s.tables.append(("each layer kind and phase against this machine's roofs (roofline.csv)",
                     rl[[c for c in ROOFLINE_COLUMNS if c in rl]].round(4)))
    from bench.measures.roofline import OVERHEAD_EFFICIENCY
    s.notes.append((roofs_line(run) or "") + " Work per layer is counted from the spec (bench.zoo.work): FLOPs, and "
                   "compulsory bytes (each tensor read or written once: a floor on the traffic, not measured). t_min = "
                   "max(FLOPs / compute roof, bytes / bandwidth roof); efficiency = t_min / the profiled time; bound: "
                   "compute or memory by the side of the ridge point, overhead where the efficiency is below "
                   f"{OVERHEAD_EFFICIENCY:.0%} or there is no compulsory work. Profiled times include the profiler's "
                   "overhead; on a shared CPU every figure is contended.")
