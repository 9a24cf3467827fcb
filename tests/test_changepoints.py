"""Change points over a series of runs (bench.results.changepoints): synthetic series with fixed seeds."""
import numpy as np
import pytest

from bench.results.changepoints import change_points, noise_sigma
from bench.results.stats import FASTER, SLOWER


def _series(seed, n=12, step_at=None, step=0.10, noise=0.03, k=1):
    rng = np.random.default_rng(seed)
    level = np.ones(n)
    if step_at is not None:
        level[step_at - 1:] *= 1 + step  # run numbers are 1-based: run 7 is index 6
    return [10 * lv * rng.normal(1, noise, k) for lv in level]


def test_a_10_percent_step_at_run_7_is_marked_at_run_7():
    c, = change_points(_series(0, step_at=7))
    assert c.index + 1 == 7 and c.cmp.verdict == SLOWER and c.n_before == 6 and c.n_after == 6
    assert 5 < c.step < 15 and c.cmp.lo < c.cmp.time_ratio < c.cmp.hi and c.cmp.lo > 1
    # at 3% noise a run's own draw can move the best split by one run: over 50 fixed seeds, 40 or more at run 7
    marks = [[c.index + 1 for c in change_points(_series(seed, step_at=7))] for seed in range(50)]
    assert sum(m == [7] for m in marks) >= 40 and sum(m in ([6], [7], [8]) for m in marks) >= 43
    up = change_points([1 / v for v in _series(1, step_at=7)])  # a speed-up: the same run, faster
    assert [(c.index, c.cmp.verdict) for c in up] == [(6, FASTER)]


def test_pure_noise_marks_nothing():
    assert all(change_points(_series(seed)) == [] for seed in range(8))
    # not never: the best split of noise is sometimes significant (seeds 8 and 10 of the first 40; 3.3% over 300)
    assert sum(change_points(_series(seed)) != [] for seed in range(100, 300)) <= 10
    assert all(change_points(_series(seed, k=3)) == [] for seed in range(30))  # three processes per run


def test_repeats_and_edges():
    cps = change_points(_series(3, step_at=5, step=0.15, k=3))  # 3 processes per run: the process is the unit
    assert [c.index for c in cps] == [4] and cps[0].cmp.n_a == 8 * 3 and cps[0].cmp.n_b == 4 * 3
    assert change_points(_series(4, n=3, step_at=2)) == []  # too short for two levels of two runs
    assert change_points(_series(5, step_at=12)) == []  # one run at the new level: not yet a change (min_size 2)
    assert noise_sigma(np.log([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])) == 0.0  # a step moves one difference only
    with pytest.raises(ValueError):
        change_points([[1.0], []])
