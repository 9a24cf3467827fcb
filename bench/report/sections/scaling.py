"""The Scaling section: images/s and weak-scaling efficiency against replicas per stack (a figure and a table per
model), and the parity across replicas (``scaling.csv`` of ``bench.run --suite scaling`` or ``python -m
bench.scaling``; ``dp_parity.json`` of ``python -m bench.scaling --parity``)."""
from __future__ import annotations

import json

import pandas as pd

from bench.report.common import Section

CPU_CAVEAT = ("Two cores: not a scaling result. On a CPU the replicas are processes or host devices sharing "
              "the same cores, so these rows prove the machinery (each stack's data-parallel API, the rows, "
              "the parity check), not how a stack scales.")


def _parity_table(rows: list[dict]) -> pd.DataFrame:
    def fmt(v):
        return None if v is None else f"{v:.2g}"
    return pd.DataFrame([{
        "check": "R vs 1 replica" if r["kind"] == "replicas" else "twins at R",
        "stacks": " vs ".join(r["stacks"]), "BN": r["bn"], "R": r["replicas"],
        "weights max |diff|": fmt(r["weights_diff"]), "BN stats max |diff|": fmt(r["bn_stats_diff"]),
        "bound": fmt(r["bound"]), "ok": {True: "yes", False: "NO", None: ""}[r["ok"]], "note": r["reason"]}
        for r in rows])


# the data-parallel stack of a row -> its implementation label (the colour it has in every other figure)
_IMPL = {"pytorch": "torch", "keras-jax": "keras/jax", "keras-tensorflow": "keras/tensorflow", "keras-torch": "keras/torch"}


def draw_scaling(df: pd.DataFrame, device: str):
    """Efficiency (with its 95% interval) and images/s against replicas, one line per stack."""
    from bench.report.common import _plt, impl_colour
    plt, _ = _plt()
    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for stack, g in df.sort_values("replicas").groupby("stack"):
        c = impl_colour(_IMPL.get(stack, stack))
        e = g.dropna(subset=["efficiency"])
        if len(e):
            lo = (e.efficiency - e.efficiency_lo).clip(lower=0).fillna(0)
            hi = (e.efficiency_hi - e.efficiency).clip(lower=0).fillna(0)
            ax_e.errorbar(e.replicas, e.efficiency, yerr=[lo, hi], marker="o", capsize=3, color=c, label=stack)
        t = g.dropna(subset=["images_per_s"])
        ax_t.plot(t.replicas, t.images_per_s, marker="o", color=c, label=stack)
    ax_e.axhline(1.0, ls="--", lw=1, color="0.4")
    ax_e.set(xlabel="replicas", ylabel="efficiency (1 = ideal)", ylim=(0, 1.15),
             title=f"weak-scaling efficiency, 95% interval ({device})")
    ax_t.set(xlabel="replicas", ylabel="images/s (global batch)", title=f"training throughput ({device})")
    reps = sorted(df.replicas.dropna().astype(int).unique())
    for ax in (ax_e, ax_t):
        ax.set_xticks(reps)
    ax_t.legend(fontsize=8)
    return fig


def scaling_answers(df: pd.DataFrame | None) -> list[str]:
    """One sentence per model and scaling mode: each stack's efficiency at the largest replica count it reached,
    best first, with its interval (the scoreboard's answer; the CPU caveat in the same sentence)."""
    if df is None or not len(df):
        return []
    ok = df[(df.status == "ok") & df.efficiency.notna() & (df.replicas > 1)]
    lines = []
    for (model, mode), g in ok.groupby(["model", ok["scaling"].fillna("weak")]):
        top = g.sort_values("replicas").groupby("stack").tail(1).sort_values("efficiency", ascending=False)
        parts = [f"{r.stack} {r.efficiency:.2f} [{r.efficiency_lo:.2f}, {r.efficiency_hi:.2f}] at {r.replicas}"
                 for r in top.itertuples()]
        cpu = " On a CPU the replicas share its cores: the machinery, not a scaling result." if (g.device == "cpu").any() else ""
        lines.append(f"{model}, {mode} scaling efficiency (1 = ideal) at the most replicas measured: "
                     f"{'; '.join(parts)}.{cpu}")
    return lines


def section_scaling(run: dict, out_dir=None) -> Section:
    """Scaling rows of the run, when it has any: a table per model and the parity table."""
    from bench.results.read import read_table
    from bench.results.schema import FILES
    s = Section("Scaling")
    run_dir = run.get("dir")
    if "scaling" in run:  # load_run read it (damaged rows dropped and said)
        df = run["scaling"]
    else:
        t = read_table(run_dir / FILES["scaling"], "scaling") if run_dir is not None else None
        df = None if t is None else t.frame()
    parity = run_dir / "dp_parity.json" if run_dir is not None else None
    if df is None and not (parity and parity.exists()):
        s.text.append("No data-parallel rows in this run (`python -m bench.run --suite scaling` writes them).")
        return s
    if df is not None:
        df = df.copy()
        if (df.device == "cpu").any():
            s.text.append(CPU_CAVEAT)
        modes = set(df["scaling"].dropna()) if "scaling" in df else {"weak"}
        if "weak" in modes:
            s.text.append("Weak scaling: a fixed per-replica batch; efficiency = median step time at 1 replica / at R "
                          "(1 is ideal), with its 95% bootstrap interval.")
        if "strong" in modes:
            s.text.append("Strong scaling: one global batch split over the replicas; efficiency = median step time at 1 "
                          "replica / (R x at R) (1 is ideal), with its 95% bootstrap interval.")
        df["_mode"] = df["scaling"].fillna("weak")
        for (name, mode), g in df.groupby(["model", "_mode"]):
            model = name if mode == "weak" else f"{name} ({mode} scaling)"
            if out_dir is not None and g.efficiency.notna().any():
                from bench.report.common import _save
                dev = ", ".join(sorted(set(g.device.dropna())))
                stem = _save(draw_scaling(g, dev), out_dir, f"scaling-{name}" + ("" if mode == "weak" else f"-{mode}"))
                caveat = " (CPU: the replicas share its cores; not a scaling result)" if "cpu" in dev else ""
                s.figures.append((stem, f"{model}: efficiency against 1 replica (95% interval; dashed: ideal) and "
                                        f"images/s, per stack{caveat}"))
            tab = pd.DataFrame({
                "stack": g["stack"], "replicas": g.replicas, "batch": g.batch_size, "collective": g.collective,
                "BN": g.bn_mode, "images/s": g.images_per_s.round(1),
                "efficiency [95% CI]": [f"{e:.2f} [{lo:.2f}, {hi:.2f}]" if pd.notna(e) else ""
                                        for e, lo, hi in zip(g.efficiency, g.efficiency_lo, g.efficiency_hi)],
                "status": g.status, "error": g.error})
            s.tables.append((f"{model}: images/s and efficiency vs replicas", tab))
    if parity and parity.exists():
        try:
            table = _parity_table(json.loads(parity.read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # damaged: one line, rows kept
            s.text.append(f"{parity.name} cannot be read ({e}): run python -m bench.scaling --parity again to remake it.")
        else:
            s.tables.append(("Parity across replicas (float64, 3 steps; null rows name what a stack lacks)", table))
    return s
