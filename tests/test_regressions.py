"""Verdicts in the report, --compare like with like, and --fail-on-regression (fabricated runs: no timing)."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from bench.report import main, render
from bench.results.schema import append_row
from bench.results.writes import write_json_atomic

IMPLS = (("torch", "torch", "eager"), ("torch", "torch", "step-compile"), ("keras", "jax", "jit"))


def make_run(root, run_id, seed, slow=None, factor=1.0, heavier=1.0, ms=None, flagged=None, repeats=0,
             models=("resnet20_v1", "densenet40_k12"), level=0.0):
    """A CPU throughput run: 3 implementations x 2 models, 40 lognormal step times each (5% spread); ``level``: each
    process's level scattered by this much (lognormal sigma), as fresh processes of one job land on a small VM."""
    rng = np.random.default_rng(seed)
    d = root / run_id
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": run_id, "suite": "throughput", "device": "cpu"})
    for model in models:
        for fw, be, mode in IMPLS:
            base = (ms or {}).get(mode, 10.0) * (2 if "densenet" in model else 1)
            f = factor if (be, mode) == slow else 1.0
            common = {"run_id": run_id, "status": "ok", "model": model, "framework": fw, "backend": be,
                      "exec_mode": mode, "device": "cpu", "precision": "fp32", "batch_size": 16}
            for r in range(repeats or 1):  # a process's level differs from the next one's by ~5%
                times = f * base * rng.lognormal(0, 0.05, 40) * (rng.normal(1, 0.05) if repeats else 1) \
                    * rng.lognormal(0, level)
                med = float(np.median(times))
                append_row(d / "throughput.csv", "throughput", {
                    **common, "job_id": f"t/{model}/{be}/{mode}" + (f"/r{r + 1}" if repeats else ""),
                    "measurement": "train", "input": "synthetic", "first_step_s": 1.0, "step_ms_median": med,
                    "images_per_s": 16 / (med / 1e3), "step_times_ms": " ".join(f"{t:.4f}" for t in times),
                    "hygiene_flag": "contended: others used 1.20 cores" if (be, mode) == flagged else None})
            append_row(d / "memory.csv", "memory", {
                **common, "job_id": f"m/{model}/{be}/{mode}", "measurement": "train", "oom": False,
                "saved_activations_mib": 100.0 * (heavier if (be, mode) == slow else 1.0)})
    return d


def _cli(tmp_path, a, b, *extra):
    return main([a.name, "--compare", b.name, "--results", str(tmp_path / "results"), "--out",
                 str(tmp_path / "reports"), *extra])


def test_compare_keys_include_the_exec_mode_and_a_slowdown_is_found_alone(tmp_path, capsys):
    base = make_run(tmp_path / "results", "base", seed=0)
    slow = make_run(tmp_path / "results", "slow", seed=1, slow=("torch", "step-compile"), factor=1.2)
    assert _cli(tmp_path, slow, base) == 0
    md = (tmp_path / "reports" / "slow" / "index.md").read_text()
    section = md.split("## Compared with base")[1]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "| synthetic |" in ln]
    assert len(rows) == 2 * len(IMPLS)  # one row per job: no cross-join of exec modes
    for ln in rows:
        if "step-compile" in ln:
            assert "| slower |" in ln
            ratio = float(ln.split(" | ")[11])
            assert 0.78 < ratio < 0.88  # images/s this / other ~ 1 / 1.2
        else:
            assert "| no measurable difference |" in ln
    assert "saved_activations_mib" in section  # memory compared beside throughput
    capsys.readouterr()
    assert _cli(tmp_path, slow, base, "--fail-on-regression", "10") == 4
    err = capsys.readouterr().err
    found = [ln for ln in err.splitlines() if ln.startswith("regression:")]
    assert len(found) == 2 and all("torch step-compile" in ln and "% slower" in ln for ln in found)
    pct = [float(ln.split("step ")[1].split("%")[0]) for ln in found]
    assert all(14 < p < 26 for p in pct)  # the right size: ~20%
    assert _cli(tmp_path, slow, base, "--fail-on-regression", "30") == 0
    assert _cli(tmp_path, base, slow, "--fail-on-regression", "10") == 0  # faster is never a regression


def test_heavier_memory_is_a_regression(tmp_path, capsys):
    base = make_run(tmp_path / "results", "base", seed=0)
    heavy = make_run(tmp_path / "results", "heavy", seed=0, slow=("jax", "jit"), heavier=1.5)
    assert _cli(tmp_path, heavy, base, "--fail-on-regression", "10") == 4
    err = capsys.readouterr().err
    assert "keras/jax jit resnet20_v1 train batch 16: saved_activations_mib 50.0% heavier" in err
    assert "slower" not in err  # identical step times: no throughput regression


def test_fail_on_regression_needs_compare(tmp_path, capsys):
    a = make_run(tmp_path / "results", "a", seed=0)
    assert main([a.name, "--results", str(tmp_path / "results"), "--fail-on-regression", "10"]) == 2
    assert "needs --compare" in capsys.readouterr().err


def test_exit_status_is_documented_in_both_helps():
    from bench.pipeline.preflight import EXIT_REGRESSION, EXIT_STATUS_HELP
    from bench.report.render import EXIT_REGRESSION as REPORT_REGRESSION
    from bench.report.render import REPORT_EXIT_HELP
    assert EXIT_REGRESSION == REPORT_REGRESSION == 4
    assert "\n  4 " in EXIT_STATUS_HELP and "\n  4 " in REPORT_EXIT_HELP


def test_fastest_sentence_says_no_measurable_difference(tmp_path):
    # eager and step-compile drawn from one distribution; jax 30% slower
    d = make_run(tmp_path / "results", "tie", seed=2, ms={"eager": 10.0, "step-compile": 10.0, "jit": 13.0})
    md = (render(d, tmp_path / "reports" / "tie").parent / "index.md").read_text()
    first = next(ln for ln in md.split("## Throughput")[1].splitlines() if ln.strip())
    assert first.count("no measurable difference between torch") == 2  # both models
    assert re.search(r"; (p \S+ >= \S+|q \S+ >= \S+ after Benjamini-Hochberg|an effect under the \d+% minimum|its 95% "
                     r"interval includes 1)\)", first), first  # and says which condition it missed
    ratio_rows = [ln for ln in md.splitlines() if "| synthetic | keras/jax jit |" in ln]
    assert len(ratio_rows) == 2 and all("| slower |" in ln and "within process" in ln for ln in ratio_rows)
    assert "One process per side: its steps do not show" in md and "--repeats 3" in md  # the caveat beside such verdicts
    assert "one process per side: one process per side" not in md.lower()  # said once


def test_a_flagged_row_is_marked_and_kept_out_of_verdicts(tmp_path, capsys):
    base = make_run(tmp_path / "results", "base", seed=0)
    run = make_run(tmp_path / "results", "busy", seed=1, slow=("jax", "jit"), factor=1.5, flagged=("jax", "jit"))
    assert _cli(tmp_path, run, base, "--fail-on-regression", "10") == 0  # a contended row gates nothing
    md = (tmp_path / "reports" / "busy" / "index.md").read_text()
    assert "2 throughput row(s) flagged and kept out of every verdict" in md and "t/resnet20_v1/jax/jit" in md
    jax = [ln for ln in md.splitlines() if "| keras/jax jit |" in ln and "| synthetic |" in ln and "interval" not in ln]
    assert len(jax) == 4 and all("| excluded (contended: others used 1.20 cores) |" in ln for ln in jax)


def test_repeats_use_the_spread_between_processes(tmp_path):
    d = make_run(tmp_path / "results", "rep", seed=3, repeats=4)
    md = (render(d, tmp_path / "reports" / "rep").parent / "index.md").read_text()
    rows = [ln for ln in md.splitlines() if "| synthetic | torch step-compile |" in ln]
    assert len(rows) == 2 and all("| between processes |" in ln for ln in rows)
    assert "The intervals rest on the spread between processes (4 ratio(s), --repeats" in md
    assert "Within process:" not in md


def test_repeats_expand_each_throughput_job_in_rounds():
    from bench.pipeline.suites import Options, expand
    opts = Options(models=("resnet20_v1",), frameworks=("torch",), gpu=False)
    once = expand("smoke", opts)
    three = expand("smoke", Options(**{**opts.__dict__, "repeats": 3}))
    t1 = [j.job_id for j in once if j.kind == "throughput"]
    t3 = [j.job_id for j in three if j.kind == "throughput"]
    assert t3 == [f"{j}/r{i}" for i in (1, 2, 3) for j in t1]  # rounds: every job once, then again
    assert [j.job_id for j in three if j.kind != "throughput"] == [j.job_id for j in once if j.kind != "throughput"]
    assert not any(re.search(r"/r\d+$", j) for j in t1)  # N = 1 leaves the job ids as they were


def test_history_lists_each_run_once_and_marks_the_change(tmp_path):
    from bench.report.history import render_history
    root = tmp_path / "results"
    make_run(root, "20260101-000001-throughput", seed=0)
    make_run(root, "20260101-000002-throughput", seed=1)
    make_run(root, "20260101-000003-throughput", seed=2, slow=("torch", "step-compile"), factor=1.2)
    other = make_run(tmp_path / "elsewhere", "20260101-000004-throughput", seed=3, slow=("jax", "jit"), factor=1.5)
    meta = json.loads((other / "run_meta.json").read_text())
    write_json_atomic(other / "run_meta.json", {**meta, "hostname": "gpu-box"})  # another machine
    index = render_history([root, root / "20260101-000002-throughput", tmp_path / "elsewhere"], tmp_path / "hist")
    md, html = (index.parent / "index.md").read_text(), index.read_text()
    runs = [ln for ln in md.split("## Throughput over runs")[0].splitlines() if ln.startswith("| 2026")]
    assert sorted(ln.split(" | ")[0][2:] for ln in runs) == [f"20260101-00000{i}-throughput" for i in (1, 2, 3, 4)]
    assert md.count("## Throughput over runs:") == 2 and "gpu-box" in md  # machines never pooled
    changed = [ln for ln in md.splitlines() if "| slower |" in ln or "| faster |" in ln]
    assert len(changed) == 2 and all("torch step-compile" in ln and "| 20260101-000003-throughput |" in ln
                                     for ln in changed)  # the slowdown, and nothing else, on that machine
    assert "no measurable difference" in md
    assert len(_images(html)) == md.count("![") >= 2


def _images(html):
    return re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)


@pytest.mark.browser
def test_history_opens_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from bench.report.history import render_history
    for i in range(3):
        make_run(tmp_path / "results", f"20260101-00000{i}-throughput", seed=i)
    index = render_history([tmp_path / "results"], tmp_path / "hist")
    n_images = len(_images(index.read_text()))
    probe = index.with_name("probe.html")
    probe.write_text(index.read_text().replace("</body>", (
        "<script>window.onload=()=>{const im=[...document.images];document.title='images='+im.length+"
        "' broken='+im.filter(i=>!(i.complete&&i.naturalWidth>0)).length;}</script></body>")))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert n_images >= 1 and f"<title>images={n_images} broken=0</title>" in dom, dom[:300]


def test_a_flagged_repeat_is_left_out_and_the_clean_ones_judged():
    """With repeats, a flagged process (contended, unstable) is kept out of the verdict, not the whole pair: the
    clean processes decide; when no process of a side is clean there is no verdict."""
    import pandas as pd

    from bench.report.common import compare_rows
    rng = np.random.default_rng(7)

    def side(level, flags):
        return pd.DataFrame([{"step_times_ms": " ".join(f"{t:.4f}" for t in level * rng.normal(1, 0.01, 40)),
                              "hygiene_flag": f} for f in flags])
    a = side(10.0, [None, None, "unstable: CV 0.30"])
    a.loc[2, "step_times_ms"] = " ".join(["30.0"] * 40)  # the flagged process: 3x slower
    r = compare_rows(a, side(10.0, [None, None, None]), 0.02)
    assert r["verdict"] == "no measurable difference" and 0.95 < r["ratio"] < 1.05
    assert r["noise"] == "between processes; 1 flagged process(es) left out"
    none_clean = compare_rows(side(10.0, ["contended: others used 1.20 cores"]), side(10.0, [None]), 0.02)
    assert none_clean["verdict"] == "excluded (contended: others used 1.20 cores)"


def test_a_side_unstable_in_every_repeat_is_judged_by_the_spread_between_its_processes():
    """Every repeat of a job unstable (its step wobbles in every fresh process: the job's own behaviour) keeps its
    verdict, at the process level, found slower when it is; a lone unstable process, or a contended one, does not."""
    import pandas as pd

    from bench.report.common import compare_rows
    from bench.report.sections.throughput import hygiene_notes
    rng = np.random.default_rng(11)

    def side(level, flags, jitter=0.15):
        return pd.DataFrame([{"step_times_ms": " ".join(f"{t:.4f}" for t in level * rng.lognormal(0, jitter, 12)),
                              "hygiene_flag": f} for f in flags])
    wobbly = ["unstable: CV 0.15"] * 3
    same = compare_rows(side(10.0, wobbly), side(10.0, [None] * 3, 0.02), 0.02)
    assert same["verdict"] == "no measurable difference"
    assert "3 unstable process(es) kept" in same["noise"] and same["noise"].startswith("between processes")
    slow = compare_rows(side(13.0, wobbly), side(10.0, [None] * 3, 0.02), 0.02)
    assert slow["verdict"] == "slower" and 0.65 < slow["ratio"] < 0.9  # images/s ratio: 10 / 13
    with_contended = compare_rows(side(10.0, wobbly[:2] + ["contended: others used 1.10 cores"]),
                                  side(10.0, [None] * 3, 0.02), 0.02)
    assert "1 flagged process(es) left out" in with_contended["noise"] and "2 unstable" in with_contended["noise"]
    assert compare_rows(side(10.0, wobbly[:1]), side(10.0, [None]), 0.02)["verdict"].startswith("excluded")
    rows = pd.DataFrame({"job_id": ["t/a/r1", "t/a/r2", "t/b/r1", "t/b/r2"],
                         "hygiene_flag": ["unstable: CV 0.15", "unstable: CV 0.12", "unstable: CV 0.20", None]})
    notes = " ".join(hygiene_notes(rows))
    assert "1 throughput row(s) flagged and kept out of every verdict: t/b/r1" in notes
    assert "2 throughput row(s) flagged unstable and kept" in notes and "t/a/r1" in notes and "t/a/r2" in notes


def test_every_implementation_moving_the_same_way_is_called_a_possible_machine_shift(tmp_path, capsys):
    """All three implementations 15% slower (a machine-wide change looks like this): the gate still fails, and says
    that the shift is shared; one implementation slower alone gets no such note."""
    from bench.report.sections.compare import one_way
    from bench.results.stats import FASTER, SAME, SLOWER
    base = make_run(tmp_path / "results", "base", seed=0)
    run = make_run(tmp_path / "results", "busy", seed=1, ms={"eager": 11.5, "step-compile": 11.5, "jit": 11.5})
    assert _cli(tmp_path, run, base, "--fail-on-regression", "10") == 4
    err = capsys.readouterr().err
    assert "note: 6 of 6 significant differences say this run is slower, across 3 implementations" in err
    md = (tmp_path / "reports" / "busy" / "index.md").read_text()
    assert "a shift of the whole machine between the runs" in md
    alone = make_run(tmp_path / "results", "alone", seed=2, slow=("torch", "step-compile"), factor=1.2)
    assert _cli(tmp_path, alone, base, "--fail-on-regression", "10") == 4
    assert "note:" not in capsys.readouterr().err
    assert one_way([("a", SLOWER)] * 3 + [("b", SLOWER)]) and not one_way([("a", SLOWER)] * 4)
    assert not one_way([("a", SLOWER)] * 3 + [("b", FASTER), ("b", SAME)])


def test_one_process_a_side_is_judged_against_the_spread_across_jobs(tmp_path, monkeypatch):
    """Two runs of 12 jobs, one process each, whose processes land 8% apart (as on the 2-core VM): judged on each
    process's own steps, many pairs come out different; against the spread of all the jobs' ratios (empirical null)
    few do, and a 40% slowdown of one implementation is still found, in its jobs alone."""
    from bench.report.common import load_run
    from bench.report.sections import compare
    from bench.report.sections.compare import throughput_table
    from bench.results.stats import SAME, SLOWER
    models = ("resnet20_v1", "densenet40_k12", "plain20", "resnet56_v1")
    root = tmp_path / "results"
    runs = [load_run(make_run(root, f"r{i}", seed=10 + i, models=models, level=0.08)) for i in range(6)]
    same = naive_same = total = 0
    for a, b in zip(runs[::2], runs[1::2]):
        t = throughput_table(a, b, 0.02)
        assert len(t) == 12 and t.noise.str.contains("empirical null").all()
        same += (t.verdict == SAME).sum()
        total += len(t)
        with monkeypatch.context() as m:  # each pair on its own process's steps alone
            m.setattr(compare, "empirical_scale", lambda ratios: float("nan"))
            naive_same += (throughput_table(a, b, 0.02).verdict == SAME).sum()
    assert same >= 0.9 * total and naive_same <= 0.5 * total  # 36 pairs: 36 and 10 here
    slow = load_run(make_run(root, "slow", seed=30, models=models, level=0.08, slow=("torch", "step-compile"),
                             factor=1.4))
    t = throughput_table(slow, runs[0], 0.02)
    assert (t[t.exec_mode == "step-compile"].verdict == SLOWER).sum() >= 3
    assert (t[t.exec_mode != "step-compile"].verdict == SAME).all()
