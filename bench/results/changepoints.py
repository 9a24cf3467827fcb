"""Change points over a series of runs: was there really a change, and where, rather than the noise of one pair.

The detector is ``ruptures`` (Truong, Oudre & Vayatis 2020; numpy and scipy only): PELT with the least-squares cost on
the log of each run's figure (the mean over its processes), a penalty of :data:`PENALTY` x sigma^2 x ln(n) (BIC-like,
as asv's step detection; sigma, the run-to-run noise, is estimated robustly from the successive differences, which a
step moves only once), and at least :data:`MIN_SIZE` runs per level (a level of one run is one noisy run, not a change:
CockroachDB asks for consecutive regressions before it alerts). Each candidate is then tested as Apache Otava (formerly
Hunter) tests its E-Divisive candidates: the processes of the level before against those of the level after, a Welch
t-test on their logs (:func:`bench.results.stats.compare_processes`, scipy) with the minimum effect; the least
significant candidate is dropped and the rest retested over the merged levels until every one passes. The result is
deterministic (no permutations). The level test asks p < :data:`CP_ALPHA` (Otava's default is 0.001): the
candidate is the best split of the series, so its p is optimistic. Measured on synthetic series of 12 runs with 3%
noise (300 seeds each, tests/test_changepoints.py): a 10% step at run 7 is marked at run 7 in 81%, within one run in
89%, missed in 8%; pure noise is marked somewhere in 3.3% of series (one process per run) and 1.7% (three per run).

Otava's and MongoDB's packages were the anchors; neither installs beside this project's stack (apache-otava 0.8
pins numpy 2.2.0 and scipy < 1.17 and pulls BigQuery, Postgres and Slack clients; signal-processing-algorithms 2.1
needs Python ~3.11 and numpy < 2), so the candidates come from ruptures and the significance from scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.results.stats import FASTER, MIN_EFFECT, SLOWER, Comparison, compare_processes

PENALTY = 3.0
MIN_SIZE = 2
CP_ALPHA = 0.005  # the level test's threshold: the candidate was chosen as the best split, so its p is optimistic
METHOD = (f"change points: ruptures PELT (least squares on the log of each run's figure, penalty {PENALTY:g} sigma^2 "
          f"ln n, at least {MIN_SIZE} runs per level), each tested level against level (Welch t on the logs of their "
          f"processes, p < {CP_ALPHA}, minimum effect) as Apache Otava tests its candidates")


@dataclass(frozen=True)
class ChangePoint:
    """The series changes level at run ``index`` (0-based: the first run of the new level). ``cmp``: the level after
    against the level before (time_ratio = after / before, its 95% interval, p, verdict)."""

    index: int
    cmp: Comparison
    n_before: int
    n_after: int

    @property
    def step(self) -> float:
        """The change in percent (after / before - 1)."""
        return 100.0 * (self.cmp.time_ratio - 1.0)


def noise_sigma(y: np.ndarray) -> float:
    """Run-to-run noise of ``y`` robust to steps: 1.4826 x MAD of the successive differences / sqrt(2)."""
    d = np.diff(y)
    if not len(d):
        return 0.0
    from scipy.stats import median_abs_deviation
    return float(median_abs_deviation(d, scale="normal") / math.sqrt(2.0))


def _candidates(y: np.ndarray, min_size: int, penalty: float) -> list[int]:
    import ruptures
    if len(y) < 2 * min_size:
        return []
    sigma2 = max(noise_sigma(y) ** 2, 1e-12)
    algo = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(y.reshape(-1, 1))
    return [b for b in algo.predict(pen=penalty * sigma2 * math.log(len(y))) if b < len(y)]


def _test(values: list[np.ndarray], cps: list[int], min_effect: float, alpha: float) -> list[ChangePoint]:
    bounds = [0, *cps, len(values)]
    out = []
    for lo, cp, hi in zip(bounds, bounds[1:], bounds[2:]):
        before, after = np.concatenate(values[lo:cp]), np.concatenate(values[cp:hi])
        out.append(ChangePoint(cp, compare_processes(after, before, min_effect, alpha), cp - lo, hi - cp))
    return out


def change_points(values: list, min_effect: float = MIN_EFFECT, alpha: float = CP_ALPHA, min_size: int = MIN_SIZE,
                  penalty: float = PENALTY) -> list[ChangePoint]:
    """Change points of a series of runs, oldest first: ``values[i]`` is run i's figure, one number or one per
    process (repeats). Only those whose level test says ``slower`` / ``faster`` (after against before) are kept."""
    vals = [np.atleast_1d(np.asarray(v, float)) for v in values]
    vals = [v[np.isfinite(v) & (v > 0)] for v in vals]
    if any(not len(v) for v in vals):
        raise ValueError("every run needs a positive figure")
    y = np.log(np.array([v.mean() for v in vals]))
    cps = _candidates(y, min_size, penalty)
    while cps:
        tested = _test(vals, cps, min_effect, alpha)
        weak = [c for c in tested if c.cmp.verdict not in (SLOWER, FASTER)]
        if not weak:
            return tested
        cps.remove(max(weak, key=lambda c: c.cmp.p).index)
    return []
