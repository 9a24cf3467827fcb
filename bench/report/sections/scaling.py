"""The Scaling section: images/s and weak-scaling efficiency against replicas per stack, and the parity
across replicas (``scaling.csv`` and ``dp_parity.json`` of ``python -m bench.scaling``)."""
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


def section_scaling(run: dict, out_dir=None) -> Section:
    """Scaling rows of the run, when it has any: a table per model and the parity table."""
    from bench.results.read import read_table
    from bench.results.schema import FILES
    s = Section("Scaling")
    run_dir = run.get("dir")
    t = read_table(run_dir / FILES["scaling"], "scaling") if run_dir is not None else None
    parity = run_dir / "dp_parity.json" if run_dir is not None else None
    if t is None and not (parity and parity.exists()):
        s.text.append("No data-parallel rows in this run (`python -m bench.scaling` writes them).")
        return s
    if t is not None:
        df = t.frame()
        if (df.device == "cpu").any():
            s.text.append(CPU_CAVEAT)
        s.text.append("Weak scaling: a fixed per-replica batch; efficiency = median step time at 1 replica / at R "
                      "(1 is ideal), with its 95% bootstrap interval.")
        for model, g in df.groupby("model"):
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
