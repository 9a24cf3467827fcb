"""The "Where the time goes" section: each implementation's profiled train step split by layer kind and
phase, the twins' largest per-layer differences, and the layer kind that explains most of the gap between
the fastest and the slowest implementation of each model (``profile.csv``, ``bench.measures.profile``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.report.common import Link, Section, _plt, _reference, _save, at_registry_depth, bring, impl_label, ratio_text
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


@dataclass(frozen=True)
class GapWhy:
    """Why one implementation's profiled step is slower than another's: the largest attributed difference (a layer kind
    and phase, the loss or the optimizer) between the slowest and the fastest profiled implementation of a model at
    one precision and batch, with its share of their gap. Computed once (:func:`gap_why`); the Scoreboard's why cell
    and this section's sentence both read it, so they give one figure. ``phrase`` is the words both use."""

    model: str
    batch_size: int
    slow: pd.Series  # the slowest profiled implementation's step row (impl, profiled_step_ms, coverage, trace_path)
    fast: pd.Series
    gap_ms: float  # slow - fast profiled step; <= 0: they profile at the same step time
    top: str | None  # the largest attributed difference: "<kind> <phase>", "loss" or "optimizer"
    top_ms: float
    unattributed_ms: float  # the difference in time no layer could be named for

    @property
    def share(self) -> float:
        return self.top_ms / self.gap_ms if self.gap_ms > 0 else float("nan")

    def phrase(self) -> str:
        """"<top>: 8.2 of the 19.0 ms gap (43%)"; "most of" only where the share is above half."""
        lead = "most of the" if self.share > 0.5 else "of the"
        return f"{self.top}: {self.top_ms:.1f} ms, {lead} {self.gap_ms:.1f} ms gap ({self.share:.0%})"

    def unattributed_phrase(self) -> str:
        """The unattributed difference where it is larger than the top one, else ''."""
        if self.unattributed_ms <= self.top_ms:
            return ""
        return (f"{self.unattributed_ms:.1f} ms ({self.unattributed_ms / self.gap_ms:.0%}) not attributed to a layer "
                f"(coverage {self.slow.coverage:.0%} vs {self.fast.coverage:.0%})")


def gap_why(steps: pd.DataFrame, layers: pd.DataFrame, model: str, precision: str | None = None,
            batch_size: int | None = None) -> GapWhy | None:
    """The :class:`GapWhy` of ``model`` (at ``precision`` and ``batch_size``; by default the largest batch profiled),
    from the summary and layer rows of ok profile jobs (:func:`_split`); None where fewer than two implementations
    were profiled with a coverage, or the slow or fast one has no layer rows."""
    st = steps[steps.model == model].dropna(subset=["coverage"])
    if precision is not None:
        st = st[st.precision == precision]
    if not len(st):
        return None
    b = st.batch_size.max() if batch_size is None else batch_size
    st = st[st.batch_size == b]
    if st.impl.nunique() < 2:
        return None
    fast, slow = st.loc[st.profiled_step_ms.idxmin()], st.loc[st.profiled_step_ms.idxmax()]
    lay = layers[(layers.model == model) & (layers.batch_size == b)]
    if precision is not None:
        lay = lay[lay.precision == precision]
    per = lay.assign(seg=_bucket(lay)).groupby(["impl", "seg"]).ms_per_step.sum().unstack(fill_value=0.0)
    if fast.impl not in per.index or slow.impl not in per.index:
        return None
    gap = float(slow.profiled_step_ms - fast.profiled_step_ms)
    diff = per.loc[slow.impl] - per.loc[fast.impl]
    named = diff.drop(["unattributed"], errors="ignore")
    top = named.idxmax() if len(named) else None
    return GapWhy(model, int(b), slow, fast, gap, top, float(named[top]) if top else 0.0,
                  float(diff.get("unattributed", 0.0)))


def gap_sentences(steps: pd.DataFrame, layers: pd.DataFrame) -> list[str]:
    """Per model (and precision / batch): the fastest and slowest implementation (profiled step) and the largest
    attributed difference between them (:func:`gap_why`, the figure the Scoreboard's why cell gives)."""
    out = []
    for key, _ in steps.dropna(subset=["coverage"]).groupby(KEYS):
        w = gap_why(steps, layers, *key)
        if w is None:
            continue
        if w.gap_ms <= 0:
            out.append(f"{key[0]}: {w.slow.impl} and {w.fast.impl} profile at the same step time.")
            continue
        tail = w.unattributed_phrase()
        out.append(f"{key[0]} (batch {key[2]}): {w.slow.impl} is the slowest profiled step ({w.slow.profiled_step_ms:.1f} "
                   f"ms) and {w.fast.impl} the fastest ({w.fast.profiled_step_ms:.1f} ms); the largest attributed "
                   f"difference is {w.phrase()}" + (f"; {tail}" if tail else "") + ".")
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
    return j.drop(columns="diff").reset_index().round(3).assign(ratio=j.ratio.map(ratio_text).values)


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
