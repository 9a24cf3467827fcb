"""The degradation suite (plain-20/56 vs ResNet-20/56 on one plan) and its report section: fixtures of epochs
rows, no training."""
import numpy as np
import pandas as pd
import pytest

from bench.data import EpochSampler
from bench.pipeline.suites import DEGRADATION_MODELS, Options, expand
from bench.report.sections.degradation import (
    degradation_sentence,
    degradation_series,
    depth_cost,
    draw_degradation,
    final_errors,
)
from bench.zoo import get_spec
from bench.zoo.recipes import recipe_for

FOUR = {"plain20", "plain56", "resnet20_v1", "resnet56_v1"}


@pytest.mark.parametrize("gpu", [False, True])
def test_plan_trains_the_four_nets_on_identical_batches(gpu):
    jobs = expand("degradation", Options(gpu=gpu))
    assert set(DEGRADATION_MODELS) == FOUR
    train = [j for j in jobs if j.kind == "epochs"]
    for fw in ("torch", "keras"):
        mine = [j for j in train if j.framework == fw]
        seeds = {j.seed for j in mine}
        for seed in seeds:
            same = [j for j in mine if j.seed == seed]
            assert {j.model for j in same} == FOUR and len(same) == 4
            plan = {(j.train_subset, j.test_subset, j.recipe, j.epochs, j.batch_size, j.precision, j.exec_mode)
                    for j in same}
            assert len(plan) == 1, plan  # one plan for every net: the comparison is of the nets alone
            # the recipe each job's trainer resolves (bench.measures.training) and the batches its sampler draws
            recipes = {recipe_for(j.recipe, get_spec(j.model).family, epochs=j.epochs, batch_size=j.batch_size)
                       for j in same}
            assert len(recipes) == 1
            plans = [EpochSampler(j.train_subset or 50000, j.batch_size, j.seed).epoch(1)[:3] for j in same]
            for p in plans[1:]:
                for a, b in zip(plans[0], p):
                    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("index", "crop_y", "crop_x", "flip"))
        if gpu:
            assert len(seeds) >= 2 and {j.recipe for j in mine} == {"paper"} and all(j.train_subset is None for j in mine)
        else:
            assert seeds == {0} and all(j.train_subset and j.train_subset < 50000 for j in mine)
    # the price of depth: one batch of throughput (train) and memory for each net and framework
    for kind in ("throughput", "memory"):
        mine = [j for j in jobs if j.kind == kind]
        assert {(j.model, j.framework) for j in mine} == {(m, f) for m in FOUR for f in ("torch", "keras")}
        assert len(mine) == 8 and len({j.batch_size for j in mine}) == 1 and {j.measurement for j in mine} == {"train"}
    assert len({j.job_id for j in jobs}) == len(jobs)


def test_suite_is_listed():
    from bench.pipeline.suites import SUITES
    assert "degradation" in SUITES


def _rows(final: dict, impls=(("torch", "torch", "eager"),), seeds=(0,), epochs=3, spread=0.0,
          train_examples=6144.0) -> pd.DataFrame:
    """Epochs rows whose training error falls linearly to ``final[model]`` (%), test error 5 points above it;
    seed k adds k * spread points."""
    rows = []
    for fw, be, mode in impls:
        for m, err in final.items():
            for seed in seeds:
                for e in range(1, epochs + 1):
                    tr = err + (epochs - e) * 10 + seed * spread
                    rows.append({"model": m, "framework": fw, "backend": be, "exec_mode": mode, "seed": seed,
                                 "epoch": e, "epochs_total": epochs, "train_examples": train_examples,
                                 "train_acc": 1 - tr / 100, "test_acc": 1 - (tr + 5) / 100, "status": "ok"})
    return pd.DataFrame(rows)


def test_sentence_says_plain56_above_plain20_when_the_rows_show_it():
    s = degradation_sentence(_rows({"plain20": 20.0, "plain56": 30.0, "resnet20_v1": 15.0, "resnet56_v1": 12.0}))
    assert "plain-56 ends above plain-20 in training error by 10.00 points" in s
    assert "the degradation the paper reports" in s and "does not show" not in s
    assert "ResNet-56's training error ends at or below ResNet-20's" in s and "by 3.00 points" in s
    assert "After 3 epoch(s) on 6,144 training images, 1 seed(s) (a short run" in s
    assert "one seed, no spread" in s
    one = final_errors(_rows({"plain20": 20.0, "plain56": 30.0})).set_index("model")
    assert one.train_spread_pct.isna().all() and one.test_spread_pct.isna().all()  # one seed: no spread, not 0


def test_sentence_is_the_opposite_when_plain56_ends_below_plain20():
    s = degradation_sentence(_rows({"plain20": 30.0, "plain56": 25.0, "resnet20_v1": 12.0, "resnet56_v1": 15.0}))
    assert "plain-56 ends at or below plain-20 in training error (by 5.00 points)" in s
    assert "this run does not show the degradation" in s and "ends above plain-20" not in s
    assert "ResNet-56's training error ends 3.00 points above ResNet-20's" in s
    assert "do not make the deeper net train better" in s


def test_sentence_judges_the_gap_against_the_spread_between_seeds():
    small_gap = _rows({"plain20": 20.0, "plain56": 21.0, "resnet20_v1": 10.0, "resnet56_v1": 10.5},
                      seeds=(0, 1, 2), spread=1.0, train_examples=50000.0, epochs=164)
    s = degradation_sentence(small_gap)
    assert "by 1.00 points" in s and "within the spread between seeds (2.00 points)" in s
    assert "does not show the degradation" in s and "at ResNet-20's level" in s
    assert "short run" not in s and "all of CIFAR-10, 3 seed(s)" in s
    big_gap = degradation_sentence(_rows({"plain20": 20.0, "plain56": 28.0, "resnet20_v1": 10.0, "resnet56_v1": 9.0},
                                         seeds=(0, 1), spread=2.0))
    assert "by 8.00 points" in big_gap and "4.0x the larger spread between seeds (2.00 points)" in big_gap
    f = final_errors(_rows({"plain20": 20.0, "plain56": 28.0}, seeds=(0, 1), spread=2.0)).set_index("model")
    assert f.loc["plain56", "train_error_pct"] == pytest.approx(29.0) and f.loc["plain56", "train_spread_pct"] == pytest.approx(2.0)


def test_sentence_says_when_a_net_is_missing():
    s = degradation_sentence(_rows({"plain20": 20.0, "resnet20_v1": 15.0, "resnet56_v1": 12.0}))
    assert "were not both trained, so this run cannot show the degradation" in s


IMPLS = (("torch", "torch", "eager"), ("keras", "tensorflow", "nojit"))


def test_figure_has_one_line_per_net_phase_and_framework():
    rows = _rows({"plain20": 20.0, "plain56": 30.0, "resnet20_v1": 15.0, "resnet56_v1": 12.0}, impls=IMPLS,
                 seeds=(0, 1), spread=1.0)
    series = degradation_series(rows)
    assert len(series.groupby(["impl", "model", "phase"])) == 4 * 2 * 2
    fig = draw_degradation(series)
    lines = [(ax, ln) for ax in fig.axes for ln in ax.lines if ln.get_gid() == "series"]
    assert len(lines) == 4 * 2 * 2
    labels = {(ax.get_title(), ln.get_label(), ln.get_linestyle()) for ax, ln in lines}
    assert len(labels) == 16
    plain_axes = [ax for ax in fig.axes if "plain nets" in ax.get_title()]
    assert len(plain_axes) == 2  # one row per framework
    for ax in plain_axes:  # plain nets only on the left, training dashed and test solid, one colour per depth
        got = {(ln.get_label(), ln.get_linestyle(), ln.get_color()) for ln in ax.lines if ln.get_gid() == "series"}
        assert got == {("plain-20 train", "--", "tab:blue"), ("plain-20 test", "-", "tab:blue"),
                       ("plain-56 train", "--", "tab:red"), ("plain-56 test", "-", "tab:red")}
    # the published errors are reference lines, never series
    refs = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "reference"]
    assert sorted({ln.get_ydata()[0] for ln in refs}) == [6.97, 8.75]
    assert all("reference" in ln.get_label() for ln in refs)
    # the mean over seeds is drawn: seed 1 adds 1 point to seed 0's error
    s = series[(series.impl == "torch eager") & (series.model == "plain56") & (series.phase == "train")]
    assert list(s.error_pct.round(6)) == [50.5, 40.5, 30.5]
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_depth_cost_joins_throughput_memory_and_final_errors():
    rows = _rows({"plain20": 20.0, "plain56": 30.0}, impls=IMPLS)
    tp = pd.DataFrame([{"model": m, "framework": fw, "backend": be, "status": "ok", "measurement": "train",
                        "input": "synthetic", "batch_size": 32, "params_trainable": p, "images_per_s": ips}
                       for m, p, ips in (("plain20", 270000, 300.0), ("plain56", 850000, 100.0))
                       for fw, be, _ in IMPLS])
    mem = pd.DataFrame([{"model": m, "framework": "torch", "backend": "torch", "status": "ok", "measurement": "train",
                         "saved_activations_mib": a, "state_plus_activations_mib": a + 10}
                        for m, a in (("plain20", 50.0), ("plain56", 140.0))])
    t = depth_cost({"throughput": tp, "memory": mem}, final_errors(rows))
    assert len(t) == 4
    r = t[(t.model == "plain56") & (t["stack"] == "torch")].iloc[0]
    assert r["params"] == 850000 and r["train images/s"] == 100.0 and r["saved activations MiB"] == 140.0
    assert r["final train error %"] == pytest.approx(30.0)
    k = t[(t.model == "plain56") & (t["stack"] == "keras/tensorflow")].iloc[0]
    assert pd.isna(k["saved activations MiB"]) and k["final test error %"] == pytest.approx(35.0)


def test_report_has_the_degradation_section_and_accuracy_does_not_draw_it_twice(tmp_path):
    from bench.report import render
    from bench.results.schema import FILES, SCHEMA_VERSION, columns  # the reader takes whole TwinBench rows only
    run = tmp_path / "run"
    run.mkdir()
    rows = _rows({"plain20": 30.0, "plain56": 25.0, "resnet20_v1": 15.0, "resnet56_v1": 12.0})
    rows.assign(run_id="run", job_id="j", batch_size=64, recipe="smoke", precision="fp32", test_loss=1.0,
                epoch_s=1.0, train_images_per_s=1.0, lr=0.1, schema_version=SCHEMA_VERSION).reindex(
        columns=columns("epochs")).to_csv(run / FILES["epochs"], index=False)
    md = (render(run, tmp_path / "out").parent / "index.md").read_text()
    assert "## Degradation" in md and "torch eager: After 3 epoch(s)" in md
    assert "this run does not show the degradation" in md
    assert md.count("(degradation.png)") == 1


def test_an_interrupted_pair_is_compared_at_the_last_epoch_both_reached():
    rows = _rows({"plain20": 20.0, "plain56": 30.0, "resnet20_v1": 15.0, "resnet56_v1": 12.0}, epochs=5)
    # plain-56 stopped after epoch 2 (error 60%); plain-20 at epoch 2 was at 50%, at epoch 5 at 20%
    cut = rows[~((rows.model == "plain56") & (rows.epoch > 2))]
    s = degradation_sentence(cut)
    assert s.startswith("After up to 5 of 5 planned epoch(s) (unfinished) on 6,144")
    assert "plain-56 is, at epoch 2 (the last both reached; 5 planned)" in s
    assert "by 10.00 points (training error 60.00% vs 50.00%" in s  # not 60% against plain-20's final 20%
    assert "ResNet-56's training error ends at or below" in s
    cut = cut[~((cut.model.str.startswith("resnet")) & (cut.epoch > 1))]
    assert "ResNet-56's training error is, at epoch 1 (the last both reached; 5 planned), at or below ResNet-20's (52.00% vs 55.00%)" in \
        degradation_sentence(cut)
    only = cut[cut.epoch <= 2]
    assert "After up to 2 of 5 planned epoch(s) (unfinished)" in degradation_sentence(only)
