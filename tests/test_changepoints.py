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


# --- bench.history: change points marked on the history pages, the profile diff at each, --fail-on-change ----------

IMPLS = (("torch", "torch", "eager"), ("keras", "tensorflow", "nojit"))


def _make_run(root, i, slow_from=5, factor=1.15, seed=0, profile=False):
    """Run ``i`` (1-based) of a series: resnet20_v1 train in two implementations, 3 processes each (3% spread between
    processes, 40 steps within); torch eager's step ``factor`` slower from run ``slow_from`` on, its conv layers the
    cause; with ``profile``, profile rows (conv, batchnorm, relu) and a trace path."""
    from bench.results.schema import PROFILE_STEP_ROW, append_row
    from bench.results.writes import write_json_atomic
    rng = np.random.default_rng(seed * 100 + i)
    run_id = f"20260102-0000{i:02d}-throughput"
    d = root / run_id
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": run_id, "suite": "throughput", "device": "cpu",
                                            "git_commit": f"c{i:02d}" + "0" * 38})
    for fw, be, mode in IMPLS:
        slow = factor if (fw == "torch" and i >= slow_from) else 1.0
        common = {"run_id": run_id, "status": "ok", "model": "resnet20_v1", "framework": fw, "backend": be,
                  "exec_mode": mode, "device": "cpu", "precision": "fp32", "batch_size": 32,
                  "timestamp": f"2026-01-02T00:{i:02d}:00+00:00"}
        for r in range(3):
            times = 100 * slow * rng.lognormal(0, 0.03) * rng.lognormal(0, 0.02, 40)
            med = float(np.median(times))
            append_row(d / "throughput.csv", "throughput", {
                **common, "job_id": f"t/resnet20_v1/{be}/{mode}/r{r + 1}", "measurement": "train", "input": "synthetic",
                "first_step_s": 1.0, "step_ms_median": med, "images_per_s": 32 / (med / 1e3),
                "step_times_ms": " ".join(f"{t:.4f}" for t in times)})
        if profile:
            conv = 60 * (1 + (slow - 1) / 0.6)  # conv is 60% of the step: all of the slowdown is its
            layers = {("conv1", "conv"): conv / 2, ("conv2", "conv"): conv / 2, ("bn1", "batchnorm"): 25,
                      ("relu1", "relu"): 15}
            for (layer, kind), ms in layers.items():
                append_row(d / "profile.csv", "profile", {**common, "job_id": f"p/{be}/{mode}", "measurement": "train",
                                                          "layer": layer, "kind": kind, "phase": "forward",
                                                          "ms_per_step": ms * rng.normal(1, 0.01)})
            append_row(d / "profile.csv", "profile", {
                **common, "job_id": f"p/{be}/{mode}", "measurement": "train", "layer": PROFILE_STEP_ROW,
                "ms_per_step": sum(layers.values()), "profiled_step_ms": sum(layers.values()), "coverage": 1.0,
                "trace_path": f"traces/{be}.json"})
    return d


def test_history_marks_the_change_point_of_the_slowed_implementation_alone(tmp_path):
    from bench.report.history import render_history
    root = tmp_path / "results"
    for i in range(1, 9):
        _make_run(root, i, profile=i in (4, 5))
    cps = []
    index = render_history([root], tmp_path / "hist", change_points_out=cps)
    t = cps[0]
    assert list(zip(t.impl, t.figure, t.run)) == [("torch eager", "step time", "20260102-000005-throughput")]
    r = t.iloc[0]
    assert (r.commit_before, r.commit_after, r.direction, r.runs_before_after) == ("c040000000", "c050000000", "slower", "4 / 4")
    assert 10 < r._step < 20
    md = (index.parent / "index.md").read_text()
    assert "Change points (" in md and "1 found" in md and "pairwise" in md
    assert "Change point of torch eager resnet20_v1 at run 20260102-000005-throughput" in md
    assert "conv changed most" in md  # the profile diff of runs 4 and 5 names the cause
    assert "keras/tensorflow nojit resnet20_v1" not in md.split("Change point of")[1].split("\n")[0]


def test_fail_on_change_gates_on_a_change_point_in_the_latest_runs(tmp_path, capsys):
    from bench.report.history import main
    root = tmp_path / "results"
    for i in range(1, 7):
        _make_run(root, i)
    out = ["--results", str(root), "--out", str(tmp_path / "hist")]
    assert main(out + ["--fail-on-change", "10"]) == 4  # run 5 of 6: among the latest 3
    err = capsys.readouterr().err
    assert "torch eager resnet20_v1 step time slower by +1" in err and "commit c040000000 -> c050000000" in err
    assert main(out + ["--fail-on-change", "25"]) == 0  # a 15% step is not beyond 25%
    for i in (7, 8):
        _make_run(root, i)
    assert main(out + ["--fail-on-change", "10"]) == 0  # run 5 of 8: an old level now, no longer the latest runs
    assert main(out + ["--fail-on-change", "10", "--change-window", "4"]) == 4
    assert main(out) == 0 and main(out + ["--fail-on-change", "0"]) == 2
    assert main(out + ["--fail-on-change", "10", "--change-window", "0"]) == 2  # no run is no window


def test_noisy_pairs_without_a_level_change_mark_no_change_point(tmp_path):
    from bench.report.history import change_point_table, gather
    root = tmp_path / "results"
    for i in range(1, 9):
        _make_run(root, i, slow_from=99, seed=3)
    extra = {}
    runs, tp, mem = gather([root], extra)
    assert change_point_table(runs, tp, mem, extra["epochs"]).empty
