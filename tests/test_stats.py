"""Differences you can trust: ratio of medians with a bootstrap interval, Mann-Whitney U, verdicts."""
import math

import numpy as np
import pytest

from bench.results.stats import (
    FASTER,
    FEW,
    SAME,
    SLOWER,
    batch_medians,
    compare,
    compare_groups,
    cv,
    drift_cv,
    mann_whitney_p,
    parse_times,
)


def _sample(seed, n=40, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.lognormal(np.log(10.0), 0.05, n)  # step times, ms, ~5% spread


def test_identical_distributions_are_no_measurable_difference():
    hits = [compare(_sample(s), _sample(s + 1000)).verdict for s in range(50)]
    assert hits.count(SAME) >= 48  # a false-positive rate of a few percent at most


def test_a_20_percent_slowdown_is_found_with_its_sign_and_size():
    base, slow = _sample(1), _sample(2, scale=1.2)
    c = compare(slow, base)
    assert c.verdict == SLOWER
    assert 1.15 < c.time_ratio < 1.25 and c.lo > 1.1 and c.hi < 1.3 and c.lo <= c.time_ratio <= c.hi
    assert c.p < 1e-3 and c.n_a == c.n_b == 10  # 40 steps a side: 10 batch medians each, fully separated
    r = compare(base, slow)  # the other way round: faster, ratio inverted
    assert r.verdict == FASTER and math.isclose(r.time_ratio, 1 / c.time_ratio)
    assert 1.15 < r.speed_ratio < 1.25 and r.speed_interval[0] < r.speed_ratio < r.speed_interval[1]


def test_a_1_percent_shift_is_below_the_minimum_effect():
    # a large, tight sample makes 1% significant; the 2% minimum effect still calls it no difference
    rng = np.random.default_rng(3)
    a, b = 10 * rng.normal(1, 0.002, 400), 10.1 * rng.normal(1, 0.002, 400)
    c = compare(b, a)
    assert c.p < 1e-3 and c.verdict == SAME
    assert compare(b, a, min_effect=0.005).verdict == SLOWER  # the flag moves it


def test_mann_whitney_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 8, 25).astype(float), rng.integers(1, 9, 31).astype(float)  # many ties
    ref = scipy_stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic", use_continuity=True).pvalue
    assert mann_whitney_p(a, b) == pytest.approx(ref, rel=1e-9)


def test_few_samples_give_no_verdict_and_helpers():
    assert compare([1.0, 2.0], [1.0, 2.0, 3.0]).verdict == FEW
    assert list(parse_times("1.5 2.5")) == [1.5, 2.5] and len(parse_times(float("nan"))) == 0
    assert cv([1.0, 1.0, 1.0]) == 0.0 and cv([1.0, 3.0]) == pytest.approx(math.sqrt(2) / 2)
    assert mann_whitney_p([1, 1, 1], [1, 1, 1]) == 1.0


def test_spread_between_processes_widens_the_interval():
    # three processes per side whose levels differ by +-5%: within each, steps are tight
    rng = np.random.default_rng(5)
    procs = lambda lv: [lvl * rng.normal(10, 0.02, 30) for lvl in lv]  # noqa: E731
    a, b = procs((0.95, 1.0, 1.05)), procs((1.05, 0.95, 1.0))
    # pooled as one process, the steps' order shuffled (no drift for batch medians to see): the spread within alone
    pooled = compare_groups([rng.permutation(np.concatenate(a))], [rng.permutation(np.concatenate(b))])
    between = compare_groups(a, b)
    assert between.hi - between.lo > 2 * (pooled.hi - pooled.lo)
    assert between.verdict == SAME
    slow = compare_groups([1.3 * g for g in a], b)  # a 30% slowdown still shows through the spread
    assert slow.verdict == SLOWER and slow.lo > 1.1
    one = compare_groups([a[0]], [b[0]])
    assert one == compare(a[0], b[0])  # one process each: the plain within-process comparison


def test_drift_within_a_process_is_noise_not_a_difference():
    """Step times that drift (slow bursts lasting many steps) are autocorrelated: a test on single steps calls two
    such runs different, the batch medians the verdict tests do not; a real 20% slowdown still shows through."""
    rng = np.random.default_rng(6)

    def drifting(level=1.0):  # 200 steps, 1% jitter around a level that wanders +-6% every 20 steps
        walk = np.repeat(1 + rng.uniform(-0.06, 0.06, 10), 20)
        return level * 10 * walk * rng.normal(1, 0.01, 200)
    pairs = [(drifting(), drifting()) for _ in range(40)]
    naive = [mann_whitney_p(a, b) < 0.01 and abs(np.median(a) / np.median(b) - 1) > 0.02 for a, b in pairs]
    verdicts = [compare(a, b).verdict for a, b in pairs]
    assert sum(naive) >= 10  # steps as independent samples: many false differences
    assert verdicts.count(SAME) >= 36  # batch medians: at most 10% false positives
    assert compare(drifting(1.2), drifting()).verdict == SLOWER
    assert len(batch_medians(np.arange(200.0))) == 10 and list(batch_medians([3.0, 1.0, 2.0])) == [3.0, 1.0, 2.0]
    steady = np.tile([9.0, 11.0], 100)  # jitter without drift: every batch has the same median
    assert cv(steady) > 0.09 and drift_cv(steady) == 0.0


def test_student_t_matches_scipy():
    st = pytest.importorskip("scipy.stats")
    from bench.results.stats import t_quantile, t_sf2
    for df in (1.0, 2.0, 3.7, 10.0, 60.0):
        for t in (0.0, 0.3, 1.0, 2.5, 7.0):
            assert t_sf2(t, df) == pytest.approx(2 * st.t.sf(t, df), abs=1e-9)
        assert t_quantile(0.975, df) == pytest.approx(st.t.ppf(0.975, df), rel=1e-6)


def test_processes_are_the_unit_with_repeats():
    """3 vs 3 processes of one job whose levels scatter 8% between processes, each steady within: pooling their steps
    (as if all were one sample) calls too many such pairs different; the per-process test keeps false positives near
    its alpha, and a 30% slowdown still shows, with its size."""
    from bench.results.stats import compare_processes
    rng = np.random.default_rng(7)

    def procs(level=1.0, k=3):
        return [level * 10 * rng.lognormal(0, 0.08) * rng.normal(1, 0.01, 40) for _ in range(k)]
    pairs = [(procs(), procs()) for _ in range(100)]
    verdicts = [compare_groups(a, b).verdict for a, b in pairs]
    pooled = [compare(np.concatenate(a), np.concatenate(b)).verdict for a, b in pairs]
    assert verdicts.count(SAME) >= 95
    assert pooled.count(SAME) < 95  # the steps pooled as one process: 85 of 100 here
    # the price: 3 vs 3 at this spread finds a 30% slowdown about a third of the time (t ~ 4 on ~4 df), 5 vs 5 most times
    slow = [compare_groups(procs(1.3, 5), procs(1.0, 5)) for _ in range(20)]
    assert sum(c.verdict == SLOWER for c in slow) >= 15
    assert np.median([c.time_ratio for c in slow]) == pytest.approx(1.3, rel=0.08)
    one = compare_groups(procs(1.0, 1), procs())  # one process against three: the three's spread for both
    assert one.n_a == 1 and one.n_b == 3 and one.lo < one.time_ratio < one.hi
    c = compare_processes([10.0, 10.0], [10.0, 10.0])
    assert c.verdict == SAME and c.p == 1.0
