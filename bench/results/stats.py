"""Is a difference real? Ratios of step times with a 95% interval, a rank test, and a verdict per pair.

Framework-neutral (numpy and scipy.stats: the tests, intervals and quantiles are scipy's). Every comparison TwinBench
prints goes through :func:`compare`:

* the ratio of the two samples' median step times, with a 95% **percentile bootstrap** interval
  (``scipy.stats.bootstrap``: :data:`N_BOOT` = 2,000 resamples of each sample, fixed seed :data:`SEED`, so a report
  is reproducible);
* a two-sided **Mann-Whitney U** test (``scipy.stats.mannwhitneyu``, normal approximation with tie and continuity
  correction, as before the switch to scipy: the exact test would change which small samples can reach p < 0.01);
* first, a side with at least :data:`MIN_BATCHED` samples is reduced to the medians of :data:`N_BATCHES`
  consecutive batches of them (**batch means**, Schmeiser 1982, as used for autocorrelated simulation output):
  step times drift and come in bursts (a 2-core CPU moved 5% between 0.3 s windows of one idle process), so
  single steps are not independent samples; a test on them calls such drift significant. Batch medians are
  close to independent, and the test and interval below see the noise a user meets from one moment to the next;
* with repeats (two or more processes on a side), the **process** is the unit: one median per process, a Welch
  t-test on their logs (:func:`compare_processes`: ``scipy.stats.ttest_ind(equal_var=False)`` and its interval);
  the steps of one process say nothing of how far the next process's level lands (on this project's 2-core VM the
  medians of 6 processes of one job spread 2-14% (CV), several times the uncertainty of one process's median), so
  steps are not pooled across processes;
* a verdict as asv gives one: ``slower`` / ``faster`` only when the ratio passes the minimum effect
  (default 2%) *and* the test is significant (p < :data:`ALPHA`) *and* the 95% interval excludes 1;
  otherwise ``no measurable difference``. Fewer than :data:`MIN_SAMPLES` samples on either side:
  ``too few samples`` (no verdict);
* many verdicts at once (a report's ratio table, a compare): the **false discovery rate** is controlled
  (Benjamini-Hochberg, ``scipy.stats.false_discovery_control``, at :data:`ALPHA`): :func:`fdr` replaces each p by
  its BH-adjusted q and the verdict asks q < alpha (:data:`FDR_METHOD`).

Orientation: ``time_ratio`` = median(a) / median(b) (> 1: a is slower); ``speed_ratio`` = its inverse
(> 1: a is faster, as the report's images/s ratios read). The verdict is a's, against b.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class _LazyScipyStats:
    """``scipy.stats``, imported on first use: a job's process needs ``drift_cv`` alone and never pays scipy's import
    (~0.4 s, which a job's phase clock would otherwise count as time in no phase)."""

    def __getattr__(self, name):
        from scipy import stats
        return getattr(stats, name)


sps = _LazyScipyStats()

N_BOOT = 2000
SEED = 20
ALPHA = 0.01
MIN_EFFECT = 0.02
MIN_SAMPLES = 3
N_BATCHES = 10
MIN_BATCHED = 2 * N_BATCHES
METHOD = (f"one process per side: step times reduced to the medians of {N_BATCHES} consecutive batches (batch means; "
          f"sides with {MIN_BATCHED}+ samples), ratio of medians with a 95% percentile bootstrap interval ({N_BOOT} "
          f"resamples, seed {SEED}) and two-sided Mann-Whitney U; repeats (two or more processes on a side): one median "
          "per process, Welch t-test on their logs, ratio of geometric means with its 95% t interval; "
          f"verdict: the ratio passes the minimum effect, p < {ALPHA} and the interval excludes 1 (as asv); otherwise "
          "'no measurable difference'")

FASTER, SLOWER, SAME, FEW = "faster", "slower", "no measurable difference", "too few samples"


def parse_times(cell) -> np.ndarray:
    """A ``step_times_ms`` cell (space-separated step times) -> float array; empty for a null cell."""
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return np.empty(0)
    return np.array([float(t) for t in str(cell).split()], dtype=float)


def mann_whitney_p(a, b) -> float:
    """Two-sided Mann-Whitney U p-value (``scipy.stats.mannwhitneyu``: normal approximation with tie and continuity
    correction). 1.0 when either sample is empty or every value is tied."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if not len(a) or not len(b):
        return 1.0
    p = float(sps.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue)
    return 1.0 if math.isnan(p) else p


def _median_ratio(a, b, axis=-1):
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def bootstrap_ratio(a, b, n_boot: int = N_BOOT, seed: int = SEED, conf: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of median(a) / median(b), each sample resampled on its own
    (``scipy.stats.bootstrap``, method percentile, a fixed seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    res = sps.bootstrap((a, b), _median_ratio, n_resamples=n_boot, confidence_level=conf, method="percentile",
                        vectorized=True, paired=False, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass(frozen=True)
class Comparison:
    """a against b. time_ratio = median(a) / median(b), its 95% interval [lo, hi]; p of Mann-Whitney U."""

    time_ratio: float
    lo: float
    hi: float
    p: float
    verdict: str
    n_a: int
    n_b: int
    q: float = math.nan  # the Benjamini-Hochberg adjusted p (:func:`fdr`); nan: this comparison was not corrected

    @property
    def speed_ratio(self) -> float:
        return 1.0 / self.time_ratio

    @property
    def speed_interval(self) -> tuple[float, float]:
        return 1.0 / self.hi, 1.0 / self.lo

    def interval_text(self, speed: bool = True, digits: int = 3) -> str:
        lo, hi = self.speed_interval if speed else (self.lo, self.hi)
        return "" if math.isnan(lo) else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def verdict_of(time_ratio: float, lo: float, hi: float, p: float, min_effect: float = MIN_EFFECT,
               alpha: float = ALPHA) -> str:
    """faster / slower (a against b) or no measurable difference: effect, test and interval must all agree."""
    if p < alpha and time_ratio > 1 + min_effect and lo > 1:
        return SLOWER
    if p < alpha and time_ratio < 1 - min_effect and hi < 1:
        return FASTER
    return SAME


def batch_medians(times, n_batches: int = N_BATCHES) -> np.ndarray:
    """The medians of ``n_batches`` consecutive, near-equal batches of ``times`` (in their measured order);
    ``times`` unchanged when there are fewer than ``2 * n_batches``."""
    t = np.asarray(times, float)
    t = t[np.isfinite(t)]
    if len(t) < 2 * n_batches:
        return t
    return np.array([np.median(c) for c in np.array_split(t, n_batches)])


def drift_cv(times) -> float:
    """:func:`cv` of the batch medians (of the samples themselves when there are too few to batch): how much the
    step time moved during the timed window, single-step jitter averaged out."""
    return cv(batch_medians(times))


def compare(a, b, min_effect: float = MIN_EFFECT, alpha: float = ALPHA, n_boot: int = N_BOOT,
            seed: int = SEED) -> Comparison:
    """Compare two samples of step times (any unit, the same for both), each in its measured order: see the
    module docstring."""
    a, b = batch_medians(a), batch_medians(b)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        r = float(np.median(a) / np.median(b)) if len(a) and len(b) else math.nan
        return Comparison(r, math.nan, math.nan, math.nan, FEW, len(a), len(b))
    r = float(np.median(a) / np.median(b))
    lo, hi = bootstrap_ratio(a, b, n_boot, seed)
    p = mann_whitney_p(a, b)
    return Comparison(r, lo, hi, p, verdict_of(r, lo, hi, p, min_effect, alpha), len(a), len(b))


def cv(times) -> float:
    """Coefficient of variation (sample std / mean) of step times; nan for fewer than 2."""
    t = np.asarray(times, float)
    return float(t.std(ddof=1) / t.mean()) if len(t) > 1 and t.mean() > 0 else math.nan


def t_sf2(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with ``df`` degrees of freedom: P(|T| >= |t|)."""
    return float(2.0 * sps.t.sf(abs(t), df))


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom."""
    return float(sps.t.ppf(q, df))


def compare_processes(a, b, min_effect: float = MIN_EFFECT, alpha: float = ALPHA) -> Comparison:
    """Compare two sets of per-process figures (one median step time per process): the process is the unit.

    A **Welch t-test on the logs** of the processes' medians: ratio = the ratio of their geometric means, the 95%
    interval exp(d +- t * se), p two-sided. One process on one side: its spread is taken to be the other side's
    (the same job on the same machine; pooled t, df = k - 1). Steps of one process are not independent draws of
    the next process's level, so a test on pooled steps calls the processes' different levels a difference; on
    this project's 2-core VM, 3 vs 3 processes of the same job: pooled steps with a bootstrap 88% no difference,
    this test 98% (docs/trust.md, the A/A checks).
    """
    la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
    ka, kb = len(la), len(lb)
    d = float(la.mean() - lb.mean())
    r = math.exp(d)
    welch = ka >= 2 and kb >= 2
    s2 = (la if ka >= 2 else lb).var(ddof=1)
    se2 = la.var(ddof=1) / ka + lb.var(ddof=1) / kb if welch else s2 * (1.0 / ka + 1.0 / kb)
    if se2 <= 0:
        p = 1.0 if d == 0 else 0.0
        return Comparison(r, r, r, p, verdict_of(r, r, r, p, min_effect, alpha), ka, kb)
    if welch:
        res = sps.ttest_ind(la, lb, equal_var=False)
        ci = res.confidence_interval(0.95)
        lo, hi, p = math.exp(ci.low), math.exp(ci.high), float(res.pvalue)
    else:  # one process on a side: the other side's spread for both, df = k - 1
        se, df = math.sqrt(se2), float(max(ka, kb) - 1)
        half = float(sps.t.ppf(0.975, df)) * se
        lo, hi, p = math.exp(d - half), math.exp(d + half), float(2.0 * sps.t.sf(abs(d) / se, df))
    return Comparison(r, lo, hi, p, verdict_of(r, lo, hi, p, min_effect, alpha), ka, kb)


def compare_groups(a: list, b: list, min_effect: float = MIN_EFFECT, alpha: float = ALPHA, n_boot: int = N_BOOT,
                   seed: int = SEED) -> Comparison:
    """Compare step times kept per process: ``a`` and ``b`` are lists of samples, one per process (repeats).

    One process on each side: :func:`compare` (the spread within the process). Two or more on either side: each
    process is reduced to its median step time and :func:`compare_processes` compares those, so the spread between
    processes, the noise a user meets from one run to the next, is the noise the verdict is judged against.
    """
    a = [g for g in (batch_medians(x) for x in a) if len(g)]
    b = [g for g in (batch_medians(x) for x in b) if len(g)]
    if len(a) <= 1 and len(b) <= 1:
        return compare(a[0] if a else [], b[0] if b else [], min_effect, alpha, n_boot, seed)
    if not a or not b:
        return Comparison(math.nan, math.nan, math.nan, math.nan, FEW, len(a), len(b))
    return compare_processes([np.median(g) for g in a], [np.median(g) for g in b], min_effect, alpha)


EMPIRICAL_MIN_JOBS = 8  # run-vs-run pairs with one process a side needed to estimate the spread across them


def empirical_scale(time_ratios) -> float:
    """The spread between two runs that no single process shows, estimated from the runs themselves (Efron's
    empirical null, 2004): 1.4826 x the median absolute deviation of the log time ratios of every job both runs
    hold, one process a side. Robust to a minority of jobs that truly changed; its centre is not used, so a shift
    of every job still counts. nan for fewer than :data:`EMPIRICAL_MIN_JOBS` ratios."""
    d = np.log(np.asarray([r for r in time_ratios if r == r and r > 0], float))
    if len(d) < EMPIRICAL_MIN_JOBS:
        return math.nan
    return float(sps.median_abs_deviation(d, scale="normal"))  # 1.4826 x MAD


def with_floor(c: Comparison, scale: float, min_effect: float = MIN_EFFECT, alpha: float = ALPHA) -> Comparison:
    """``c`` (one process a side) judged against the larger of its own uncertainty and ``scale`` (the log-ratio
    spread across jobs, :func:`empirical_scale`): normal interval exp(d +- 1.96 se) and two-sided p on d / se."""
    if c.verdict == FEW or not (scale == scale) or math.isnan(c.lo):
        return c
    d = math.log(c.time_ratio)
    z = float(sps.norm.ppf(0.975))
    se = max((math.log(c.hi) - math.log(c.lo)) / (2 * z), scale)
    if se <= 0:
        return c
    lo, hi = math.exp(d - z * se), math.exp(d + z * se)
    p = float(2.0 * sps.norm.sf(abs(d) / se))
    return Comparison(c.time_ratio, lo, hi, p, verdict_of(c.time_ratio, lo, hi, p, min_effect, alpha), c.n_a, c.n_b)


FDR_METHOD = (f"Benjamini-Hochberg false discovery rate control at {ALPHA}: each p is replaced by its BH-adjusted q over "
              "the verdicts of the table (scipy.stats.false_discovery_control), and a verdict asks q < alpha")


def fdr(comparisons: list[Comparison], min_effect: float = MIN_EFFECT, alpha: float = ALPHA) -> list[Comparison]:
    """The same comparisons judged together: Benjamini-Hochberg (``scipy.stats.false_discovery_control``, method
    ``bh``) over the p of every comparison that has one (``too few samples`` and nan p are left as they are); each
    verdict asks the adjusted q < ``alpha`` instead of p < ``alpha`` (effect and interval as before), so among the
    ``faster`` / ``slower`` calls the expected share of false ones is at most ``alpha``. BH is proven under
    independence and positive regression dependence (Benjamini & Yekutieli 2001); jobs of one run share the
    machine's drift, a positive dependence; Benjamini-Yekutieli (any dependence) would cost a factor ~ln(n) + 0.58
    in q, which at 100 tests is 5.2x: BH is the stated choice."""
    idx = [i for i, c in enumerate(comparisons) if c.verdict != FEW and c.p == c.p]
    if not idx:
        return list(comparisons)
    q = sps.false_discovery_control([comparisons[i].p for i in idx], method="bh")
    out = list(comparisons)
    for i, qi in zip(idx, q):
        c = out[i]
        out[i] = Comparison(c.time_ratio, c.lo, c.hi, c.p, verdict_of(c.time_ratio, c.lo, c.hi, float(qi), min_effect, alpha),
                            c.n_a, c.n_b, float(qi))
    return out
