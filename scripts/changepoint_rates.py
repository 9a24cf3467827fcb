"""The change-point detector's rates on synthetic series (the figures docs/trust.md and
bench/results/changepoints.py quote): 12 runs with 3% noise, seeds 0..N-1; a 10% step at run 7 (one process per
run), and pure noise with one and with three processes per run. Writes one CSV row per series (its marked runs)
and prints the rates.

    python scripts/changepoint_rates.py --seeds 300 --csv rates.csv
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from bench.results.changepoints import change_points


def series(seed: int, n: int = 12, step_at: int | None = None, step: float = 0.10, noise: float = 0.03,
           k: int = 1) -> list[np.ndarray]:
    """As tests/test_changepoints.py: ``k`` processes per run, a step of ``step`` from run ``step_at`` (1-based)."""
    rng = np.random.default_rng(seed)
    level = np.ones(n)
    if step_at is not None:
        level[step_at - 1:] *= 1 + step
    return [10 * lv * rng.normal(1, noise, k) for lv in level]


CASES = {"step10_at7_k1": dict(step_at=7), "noise_k1": {}, "noise_k3": dict(k=3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=300, help="series per case (default 300)")
    ap.add_argument("--csv", type=Path, required=True, help="CSV to write (one row per series)")
    a = ap.parse_args()
    if a.seeds < 1:
        ap.error(f"--seeds must be at least 1 (got {a.seeds})")
    if not a.csv.parent.is_dir():
        ap.error(f"--csv {a.csv}: no folder {a.csv.parent}")
    rows = [{"case": name, "seed": s, "marked_runs": " ".join(str(c.index + 1) for c in change_points(series(s, **kw)))}
            for name, kw in CASES.items() for s in range(a.seeds)]
    with a.csv.open("w", newline="") as f:
        w = csv.DictWriter(f, ["case", "seed", "marked_runs"])
        w.writeheader()
        w.writerows(rows)
    for name in CASES:
        marks = [r["marked_runs"].split() for r in rows if r["case"] == name]
        pct = lambda pred: 100.0 * sum(map(pred, marks)) / len(marks)  # noqa: E731
        if name.startswith("step"):
            print(f"{name}: at run 7 {pct(lambda m: m == ['7']):.1f}%, within one run "
                  f"{pct(lambda m: m in (['6'], ['7'], ['8'])):.1f}%, missed {pct(lambda m: not m):.1f}%")
        else:
            print(f"{name}: marked somewhere {pct(bool):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
