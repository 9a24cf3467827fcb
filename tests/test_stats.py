"""Differences you can trust: ratio of medians with a bootstrap interval, Mann-Whitney U, verdicts; scipy's functions
against the hand-written ones they replaced (kept here only, as the reference), and Benjamini-Hochberg."""
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
    compare_processes,
    cv,
    drift_cv,
    fdr,
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


def test_mann_whitney_matches_the_old_implementation_with_ties():
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 8, 25).astype(float), rng.integers(1, 9, 31).astype(float)  # many ties
    assert mann_whitney_p(a, b) == pytest.approx(old.mann_whitney_p(a, b), rel=1e-9)
    for seed in range(20):  # batch medians as compare sees them: 10 a side, and 3 vs 5
        x, y = _sample(seed, 10), _sample(seed + 100, 10, 1.01 + seed / 200)
        assert mann_whitney_p(x, y) == pytest.approx(old.mann_whitney_p(x, y), rel=1e-9)
        assert mann_whitney_p(x[:3], y[:5]) == pytest.approx(old.mann_whitney_p(x[:3], y[:5]), rel=1e-9)


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


def test_student_t_matches_the_old_implementation():
    from bench.results.stats import t_quantile, t_sf2
    for df in (1.0, 2.0, 3.7, 10.0, 60.0):
        for t in (0.0, 0.3, 1.0, 2.5, 7.0, -2.5):
            assert t_sf2(t, df) == pytest.approx(old.t_sf2(t, df), abs=1e-9)
        assert t_quantile(0.975, df) == pytest.approx(old.t_quantile(0.975, df), rel=1e-6)


def test_compare_processes_matches_the_old_welch_test():
    """scipy's ttest_ind(equal_var=False) and its interval against the hand-written Welch on the logs: same ratio,
    interval, p and verdict on fixed samples (3 vs 3, 2 vs 5, one process against three, a 10% and a 30% step)."""
    rng = np.random.default_rng(8)
    for ka, kb, level in ((3, 3, 1.0), (3, 3, 1.1), (2, 5, 1.3), (1, 3, 1.3), (3, 1, 1.0), (5, 5, 1.1)):
        a, b = level * rng.lognormal(np.log(10), 0.05, ka), rng.lognormal(np.log(10), 0.05, kb)
        new, ref = compare_processes(a, b), old.compare_processes(a, b)
        assert (new.time_ratio, new.verdict) == (pytest.approx(ref.time_ratio, rel=1e-12), ref.verdict)
        assert (new.lo, new.hi, new.p) == (pytest.approx(ref.lo, rel=1e-6), pytest.approx(ref.hi, rel=1e-6),
                                           pytest.approx(ref.p, rel=1e-6, abs=1e-12))


def test_bootstrap_interval_and_verdicts_match_the_old_implementation():
    """scipy.stats.bootstrap (percentile) draws other resamples than the old numpy code: the bounds agree to Monte
    Carlo error (2,000 resamples), and the verdicts of 60 fixed pairs (A/A, 3%, 5% and 20% steps) are the same."""
    for seed in range(60):
        a, b = _sample(seed, 40, (1.0, 1.03, 1.05, 1.2)[seed % 4]), _sample(seed + 500, 40)
        new, ref = compare(a, b), old.compare(a, b)
        assert new.verdict == ref.verdict and new.p == pytest.approx(ref.p, rel=1e-9)
        assert new.lo == pytest.approx(ref.lo, rel=0.01) and new.hi == pytest.approx(ref.hi, rel=0.01)


def test_empirical_scale_is_the_old_1_4826_mad():
    from bench.results.stats import empirical_scale
    r = np.random.default_rng(10).lognormal(0, 0.05, 30)
    d = np.log(r)
    assert empirical_scale(r) == pytest.approx(1.4826 * np.median(np.abs(d - np.median(d))), rel=1e-4)
    assert math.isnan(empirical_scale(r[:7]))


def test_benjamini_hochberg_on_100_null_and_5_real_comparisons():
    """100 A/A comparisons (3 vs 3 processes, 5% spread) and 5 real 30% slowdowns: corrected, the 5 are called and
    at most one null is; uncorrected at p < 0.01 the nulls would be about 1 in 100 per run of such a table."""
    rng = np.random.default_rng(9)

    def procs(level, k=3):
        return [level * 10 * rng.lognormal(0, 0.02) * rng.normal(1, 0.01, 40) for _ in range(k)]
    null = [compare_groups(procs(1.0), procs(1.0)) for _ in range(100)]
    real = [compare_groups(procs(1.3, 5), procs(1.0, 5)) for _ in range(5)]
    out = fdr(null + real)
    assert [c.verdict for c in out[100:]] == [SLOWER] * 5
    assert sum(c.verdict != SAME for c in out[:100]) <= 1
    assert all(c.q >= c.p for c in out) and out[0].p == null[0].p  # q >= p; the raw p is kept
    few = compare([1.0, 2.0], [1.0, 2.0, 3.0])
    assert fdr([few]) == [few] and fdr([]) == []
    # the q values are BH's: p_(i) * n / i, made monotone
    ps = [c.p for c in out]
    order = np.argsort(ps)
    q_ref = np.minimum.accumulate((np.array(ps)[order] * len(ps) / np.arange(1, len(ps) + 1))[::-1])[::-1]
    assert np.allclose(np.array([c.q for c in out])[order], np.minimum(q_ref, 1.0))


def test_processes_are_the_unit_with_repeats():
    """3 vs 3 processes of one job whose levels scatter 8% between processes, each steady within: pooling their steps
    (as if all were one sample) calls too many such pairs different; the per-process test keeps false positives near
    its alpha, and a 30% slowdown still shows, with its size."""
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


class old:
    """The hand-written statistics stats.py held before it called scipy (at 8f80138), kept as the reference the scipy
    calls are tested against; nothing outside this file uses them."""

    @staticmethod
    def _ranks(x):
        _, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
        upper = np.cumsum(counts)
        return (upper - (counts - 1) / 2.0)[inv], counts

    @staticmethod
    def mann_whitney_p(a, b):
        a, b = np.asarray(a, float), np.asarray(b, float)
        n1, n2 = len(a), len(b)
        if not n1 or not n2:
            return 1.0
        ranks, ties = old._ranks(np.concatenate([a, b]))
        u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
        n = n1 + n2
        var = n1 * n2 / 12.0 * ((n + 1) - (ties ** 3 - ties).sum() / (n * (n - 1)))
        if var <= 0:
            return 1.0
        z = max(abs(u1 - n1 * n2 / 2.0) - 0.5, 0.0) / math.sqrt(var)
        return float(math.erfc(z / math.sqrt(2.0)))

    @staticmethod
    def bootstrap_ratio(a, b, n_boot=2000, seed=20, conf=0.95):
        a, b = np.asarray(a, float), np.asarray(b, float)
        rng = np.random.default_rng(seed)
        ma = np.median(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1)
        mb = np.median(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
        lo, hi = np.quantile(ma / mb, [(1 - conf) / 2, (1 + conf) / 2])
        return float(lo), float(hi)

    @staticmethod
    def compare(a, b):
        from bench.results.stats import Comparison, verdict_of
        a, b = batch_medians(a), batch_medians(b)
        r = float(np.median(a) / np.median(b))
        lo, hi = old.bootstrap_ratio(a, b)
        p = old.mann_whitney_p(a, b)
        return Comparison(r, lo, hi, p, verdict_of(r, lo, hi, p), len(a), len(b))

    @staticmethod
    def _betacf(a, b, x):
        tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
        c, d = 1.0, 1.0 - qab * x / qap
        d = 1.0 / (d if abs(d) > tiny else tiny)
        h = d
        for m in range(1, 300):
            m2 = 2 * m
            for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
                d = 1.0 + aa * d
                d = 1.0 / (d if abs(d) > tiny else tiny)
                c = 1.0 + aa / c
                c = c if abs(c) > tiny else tiny
                h *= d * c
            if abs(d * c - 1.0) < 1e-14:
                break
        return h

    @staticmethod
    def _betainc(a, b, x):
        if x <= 0.0:
            return 0.0
        if x >= 1.0:
            return 1.0
        front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
        if x < (a + 1.0) / (a + b + 2.0):
            return front * old._betacf(a, b, x) / a
        return 1.0 - front * old._betacf(b, a, 1.0 - x) / b

    @staticmethod
    def t_sf2(t, df):
        return old._betainc(df / 2.0, 0.5, df / (df + t * t))

    @staticmethod
    def t_quantile(q, df):
        target, lo, hi = 2.0 * (1.0 - q), 0.0, 1e6
        for _ in range(200):
            mid = (lo + hi) / 2.0
            lo, hi = (mid, hi) if old.t_sf2(mid, df) > target else (lo, mid)
        return (lo + hi) / 2.0

    @staticmethod
    def compare_processes(a, b):
        from bench.results.stats import Comparison, verdict_of
        la, lb = np.log(np.asarray(a, float)), np.log(np.asarray(b, float))
        ka, kb = len(la), len(lb)
        d = float(la.mean() - lb.mean())
        if ka >= 2 and kb >= 2:
            va, vb = la.var(ddof=1) / ka, lb.var(ddof=1) / kb
            se2 = va + vb
            df = se2 ** 2 / ((va ** 2 / (ka - 1) if va else 0.0) + (vb ** 2 / (kb - 1) if vb else 0.0) or 1e-300)
        else:
            s2 = (la if ka >= 2 else lb).var(ddof=1)
            se2, df = s2 * (1.0 / ka + 1.0 / kb), float(max(ka, kb) - 1)
        r = math.exp(d)
        se = math.sqrt(se2)
        half = old.t_quantile(0.975, df) * se
        lo, hi = math.exp(d - half), math.exp(d + half)
        p = old.t_sf2(d / se, df)
        return Comparison(r, lo, hi, p, verdict_of(r, lo, hi, p), ka, kb)
