"""How far from the limit, in the report: the roofline figure of each model (both twins' layer kinds under this
machine's roofs), which kinds are memory-bound and what their bytes cost (the "Where the time goes" section), and
for the Scoreboard's why the fastest implementation's fraction of its roof and its step time at the roofs
(``roofline.csv``, ``bench.measures.roofline``; the roofs the run recorded in ``run_meta.json``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.common import _plt, _save, impl_colour, impl_gid, impl_label
from bench.results.schema import PROFILE_STEP_ROW

MARKERS = {"conv": "o", "linear": "s", "batchnorm": "^", "relu": "v", "pool": "D", "add": "P", "concat": "X"}


def roofline_rows(run: dict) -> pd.DataFrame:
    """The run's ok roofline rows at the registry depth, each with its implementation label (empty: none)."""
    df = run.get("roofline")
    if df is None or not len(df) or not (df.status == "ok").any():
        return pd.DataFrame()
    from bench.report.common import at_registry_depth
    ok = df[df.status == "ok"]
    ok = ok[at_registry_depth(ok)]
    return ok.assign(impl=impl_label(ok)) if len(ok) else pd.DataFrame()


def roofs_line(run: dict) -> str | None:
    """One sentence: the roofs the run used, with where and when they were measured; None without roofs."""
    r = run.get("meta", {}).get("roofs") or {}
    if not r.get("libraries"):
        return r.get("null_reason")
    libs = "; ".join(f"{lib} " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in (x.get("gemm_gflops") or {}).items())
                     for lib, x in r["libraries"].items() if x.get("gemm_gflops"))
    theo = (r.get("theoretical") or {}).get("gflops") or {}
    beside = (", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in theo.items())
              + ("" if (r.get("theoretical") or {}).get("upper_bound") else " (not an upper bound: clock not readable)"))
    quick = " in quick mode (smaller kernels: python -m bench.peaks --remeasure measures the full roofs)"
    return (f"Roofs of {r.get('machine')} measured {r.get('measured_at')} by python -m bench.peaks"
            f"{quick if r.get('quick') else ''}: GEMM {libs}; "
            f"bandwidth {r.get('bandwidth_gbs', 0):.1f} GB/s ({r.get('bandwidth_library')}'s STREAM triad)"
            + (f"; theoretical, beside: {beside}" if theo else "") + ".")


def memory_sentences(rl: pd.DataFrame) -> list[str]:
    """Per model and implementation: the layer kinds whose compulsory bytes bound them (bound memory), what those
    bytes cost at the bandwidth roof against their measured time; the kinds under the memory roof but far below it."""
    out = []
    for (model, impl, batch), g in rl.groupby(["model", "impl", "batch_size"]):
        mem = g[g.bound == "memory"]
        far = g[(g.limiting_roof == "memory") & (g.bound == "overhead")]
        parts = [f"{r.layer_kind} {r.phase} ({r.mbytes_per_step:.1f} MB a step: {r.t_min_ms:.2f} ms at the bandwidth "
                 f"roof, measured {r.ms_per_step:.2f} ms)" for r in mem.itertuples()]
        text = f"{model} (batch {batch}), {impl}: " + ("memory-bound: " + "; ".join(parts) if parts else
                                                      "no layer kind is memory-bound")
        if len(far):
            text += (f"; under the memory roof but below {_overhead():.0%} of it (overhead): "
                     + ", ".join(f"{r.layer_kind} {r.phase}" for r in far.itertuples()))
        out.append(text + ".")
    return out


def _overhead() -> float:
    from bench.measures.roofline import OVERHEAD_EFFICIENCY
    return OVERHEAD_EFFICIENCY


def figure(rl: pd.DataFrame, run: dict, model: str, out: Path) -> tuple[str, str] | None:
    """The roofline of ``model``: attained GFLOP/s against intensity (log-log), every implementation's layer kinds
    (forward filled, backward hollow) under the measured roofs (solid) and the theoretical ones (dashed)."""
    g = rl[(rl.model == model) & (rl.intensity_flop_per_byte > 0) & (rl.achieved_gflops > 0)]
    if not len(g):
        return None
    plt, _ = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    roofs = run.get("meta", {}).get("roofs") or {}
    bw = roofs.get("bandwidth_gbs") or g.memory_roof_gbs.dropna().max()
    x = np.logspace(np.log10(max(g.intensity_flop_per_byte.min() / 4, 1e-3)),
                    np.log10(g.intensity_flop_per_byte.max() * 4), 200)
    for lib, peak in g.groupby("backend").compute_roof_gflops.max().dropna().items():
        ax.plot(x, np.minimum(peak, bw * x), color="black", lw=1.5)
        ax.annotate(f"{lib} GEMM {peak:.0f} GFLOP/s", (x[-1], peak), ha="right", va="bottom", fontsize=8)
    theo = (roofs.get("theoretical") or {}).get("gflops", {}).get("fp32")
    if theo:
        ax.axhline(theo, color="grey", ls="--", lw=1)
        ax.annotate(f"theoretical fp32 {theo:.0f} GFLOP/s", (x[0], theo), ha="left", va="bottom", fontsize=8,
                    color="grey")
    ax.annotate(f"STREAM triad {bw:.1f} GB/s", (x[0], bw * x[0]), ha="left", va="bottom", fontsize=8, rotation=30)
    for r in g.itertuples():
        fwd = r.phase == "forward"
        c = impl_colour(r.impl)
        ax.scatter(r.intensity_flop_per_byte, r.achieved_gflops, marker=MARKERS.get(r.layer_kind, "o"), s=60,
                   facecolors=c if fwd else "none", edgecolors=c, linewidths=1.5, gid=impl_gid(r.impl))
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], ls="", marker="o", color=impl_colour(i), label=i) for i in sorted(set(g.impl))]
    handles += [Line2D([], [], ls="", marker=MARKERS.get(k, "o"), color="grey", label=k)
                for k in dict.fromkeys(g.layer_kind)]
    handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey", label="hollow: backward"))
    ax.legend(handles=handles, fontsize=7, loc="lower right", ncol=2)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP per compulsory byte)",
           ylabel="attained GFLOP/s", title=f"{model}: roofline of the profiled train step (batch "
           f"{int(g.batch_size.max())})")
    stem = _save(fig, out, f"roofline_{model}")
    skipped = sorted(set(rl[(rl.model == model)].layer_kind) - set(g.layer_kind))
    cap = (f"{model}: each implementation's layer kinds (filled forward, hollow backward) under this machine's roofs "
           "(solid: measured; dashed: theoretical)" + (f"; off the log axes (no FLOPs): {', '.join(skipped)}"
                                                       if skipped else ""))
    return stem, cap


def at_roofs(rl: pd.DataFrame, steps: pd.DataFrame, model: str, impl: str, batch) -> dict | None:
    """The implementation's profiled step, its step at the roofs (each joined kind at t_min, the rest as measured),
    its model FLOPs per step and the fraction of its compute roof the unprofiled step reaches; None without roofs."""
    g = rl[(rl.model == model) & (rl.impl == impl) & (rl.batch_size == batch)]
    st = steps[(steps.model == model) & (steps.impl == impl) & (steps.batch_size == batch)]
    if not len(g) or not len(st) or g.t_min_ms.isna().all():
        return None
    s = st.iloc[0]
    roof = g.compute_roof_gflops.dropna().max()
    step = s.profiled_step_ms
    at = step - g.ms_per_step.sum() + g.t_min_ms.sum()
    flops = g.gflop_per_step.sum()
    base = s.unprofiled_step_ms if pd.notna(s.unprofiled_step_ms) and s.unprofiled_step_ms > 0 else step
    return {"step_ms": step, "at_roofs_ms": at, "gflops": flops / (base / 1e3), "roof": roof,
            "fraction": flops / (base / 1e3) / roof if roof else None}


def headroom_text(rl: pd.DataFrame, steps: pd.DataFrame, model: str, impl: str, batch) -> str | None:
    """The why cell's addition: the fastest implementation's fraction of its roof and its step at the roofs."""
    if not len(rl):
        return None
    h = at_roofs(rl, steps[steps.layer == PROFILE_STEP_ROW] if "layer" in steps else steps, model, impl, batch)
    if h is None or h["fraction"] is None:
        return None
    return (f"{impl} reaches {h['fraction']:.2f} of its compute roof ({h['gflops']:.1f} of {h['roof']:.0f} GFLOP/s); "
            f"with every layer kind at its roof its profiled step would take {h['at_roofs_ms']:.1f} of "
            f"{h['step_ms']:.1f} ms")
