"""The smoke suite's training part, the fidelity suite (seeds) and the report's Fidelity section."""
import pandas as pd

from bench.core.job import Job
from bench.pipeline.suites import Options, expand


def test_seed_leaves_default_job_ids_unchanged():
    j = Job("epochs", "resnet20_v1", "torch", None, "fp32", 64, recipe="smoke", train_subset=4096)
    assert j.job_id == "epochs/resnet20_v1/torch/fp32/b64/smoke/n4096"
    assert Job(**{**j.to_dict(), "seed": 1}).job_id == j.job_id + "/s1"


def test_fidelity_suite_trains_each_twin_with_several_seeds_on_one_plan():
    for gpu, seeds in ((False, {0, 1}), (True, {0, 1, 2})):
        jobs = expand("fidelity", Options(gpu=gpu))
        assert {j.kind for j in jobs} == {"epochs"}
        for fw in ("torch", "keras"):
            mine = [j for j in jobs if j.framework == fw]
            assert {j.seed for j in mine} == seeds
            plan = {(j.model, j.recipe, j.epochs, j.train_subset, j.batch_size, j.precision) for j in mine}
            assert len(plan) == 1  # every seed of every twin on the same plan
        assert len({j.job_id for j in jobs}) == len(jobs)
    cpu = expand("fidelity", Options(gpu=False))
    assert all(j.train_subset and j.train_subset < 50000 for j in cpu)
    assert all(j.train_subset is None for j in expand("fidelity", Options(gpu=True)))  # the full set on a GPU


def test_smoke_trains_the_smoke_recipe_on_a_subset():
    jobs = [j for j in expand("smoke", Options(gpu=False)) if j.kind == "epochs"]
    assert {j.framework for j in jobs} == {"torch", "keras"}
    assert all(j.recipe == "smoke" and j.train_subset == 3072 and j.seed == 0 for j in jobs)


def _rows(impl_accs: dict) -> pd.DataFrame:
    rows = []
    for (fw, seed), accs in impl_accs.items():
        for e, a in enumerate(accs, start=1):
            rows.append({"model": "resnet20_v1", "recipe": "smoke", "precision": "fp32", "train_examples": 8192.0,
                         "framework": fw, "backend": "torch" if fw == "torch" else "tensorflow",
                         "exec_mode": "eager" if fw == "torch" else "nojit",
                         "seed": seed, "epoch": e, "epochs_total": 2, "test_acc": a, "status": "ok"})
    return pd.DataFrame(rows)


def test_fidelity_table_sets_the_gap_beside_the_seed_spread():
    from bench.report import fidelity_table, impl_label
    df = _rows({("torch", 0): [0.30, 0.50], ("torch", 1): [0.34, 0.52],
                ("keras", 0): [0.31, 0.40], ("keras", 1): [0.33, 0.42]})
    t = fidelity_table(df.assign(impl=impl_label(df)))
    assert list(t.epoch) == [1, 2]
    e1, e2 = t.iloc[0], t.iloc[1]
    assert abs(e1["torch eager mean"] - 0.32) < 1e-9 and abs(e1["keras/tensorflow nojit mean"] - 0.32) < 1e-9
    assert abs(e1["gap between frameworks"]) < 1e-9 and abs(e1["largest seed spread"] - 0.04) < 1e-9
    assert abs(e2["gap between frameworks"] - 0.10) < 1e-9 and abs(e2["gap / spread"] - 5.0) < 1e-6
    # one seed only: no spread to compare with, no table
    assert not len(fidelity_table(df[df.seed == 0].assign(impl=impl_label(df[df.seed == 0]))))


def test_report_renders_fidelity_and_says_what_a_subset_training_is(tmp_path):
    from bench.report import render
    from bench.results.schema import FILES, SCHEMA_VERSION, columns  # the reader takes whole TwinBench rows only
    run = tmp_path / "run"
    run.mkdir()
    df = _rows({("torch", 0): [0.30, 0.50], ("torch", 1): [0.34, 0.52],
                ("keras", 0): [0.31, 0.40], ("keras", 1): [0.33, 0.42]})
    df.assign(run_id="run", job_id="j", batch_size=64, train_acc=0.5, epoch_s=1.0, train_images_per_s=1.0,
              lr=0.1, schema_version=SCHEMA_VERSION).reindex(columns=columns("epochs")).to_csv(run / FILES["epochs"], index=False)
    md = (render(run, tmp_path / "out") .parent / "index.md").read_text()
    assert "## Fidelity" in md and "gap between frameworks" in md
    assert "first 8,192 training images for 2 epoch(s)" in md and "not a result" in md
