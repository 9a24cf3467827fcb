"""The report's Scoreboard answers from the rows: the fastest with its margin and verdict, the leanest like with like
only, why from the profile's largest attributed difference; and each implementation keeps one colour in every
figure of a report."""
import re
import sys
from pathlib import Path

import numpy as np

from bench.report import render
from bench.report.sections.scoreboard import fastest_cells, leanest_cells, why_cells
from bench.results.schema import append_row
from bench.results.writes import write_json_atomic

sys.path.insert(0, str(Path(__file__).parent))
from test_report import make_run  # noqa: E402

TORCH = {"framework": "torch", "backend": "torch", "exec_mode": "eager"}
KERAS = {"framework": "keras", "backend": "tensorflow", "exec_mode": "nojit"}


def _run(root, run_id="board"):
    d = root / run_id
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": run_id, "suite": "fixture", "device": "cpu"})
    return d


def _throughput(d, stack, ms, seed, model="resnet20_v1"):
    times = ms * (1 + np.random.default_rng(seed).permutation(np.arange(-20, 20)) / 2000)  # median ms, spread 2%
    append_row(d / "throughput.csv", "throughput", {
        **stack, "run_id": d.name, "job_id": f"t/{model}/{stack['backend']}", "status": "ok", "model": model,
        "device": "cpu", "precision": "fp32", "batch_size": 8, "measurement": "train", "input": "synthetic",
        "first_step_s": 1.0, "step_ms_median": float(np.median(times)), "images_per_s": 8e3 / float(np.median(times)),
        "step_times_ms": " ".join(f"{t:.4f}" for t in times)})


def _board_row(md, model):
    board = md.split("## Scoreboard")[1].split("\n## ")[0]
    return next(ln for ln in board.splitlines() if ln.startswith(f"| {model} |"))


def test_keras_twin_wins_named_with_ratio_and_verdict(tmp_path):
    d = _run(tmp_path)
    _throughput(d, TORCH, 20.0, 1)
    _throughput(d, KERAS, 10.0, 2)  # Keras twice as fast
    run = {"throughput": __import__("pandas").read_csv(d / "throughput.csv"), "meta": {}}
    cell = str(fastest_cells(run, [])[("resnet20_v1", "fp32", 8, "train")])
    assert cell.startswith("[keras/tensorflow nojit 800 images/s](#throughput)")
    assert re.search(r"; [12]\.\d{3}x \[1\.9\d\d, 2\.0\d\d\] over torch eager \(400\): faster$", cell), cell
    md = (render(d, tmp_path / "rep").parent / "index.md").read_text()
    assert md.index("## Scoreboard") < md.index("## Environment")  # the answers come first
    row = _board_row(md, "resnet20_v1")
    assert "keras/tensorflow nojit 800 images/s" in row and "faster" in row
    _throughput(d, TORCH, 5.0, 3, model="plain20")  # and where torch wins, torch is named
    _throughput(d, KERAS, 10.0, 4, model="plain20")
    row = _board_row((render(d, tmp_path / "rep").parent / "index.md").read_text(), "plain20")
    assert "[torch eager 1,600 images/s]" in row and "over keras/tensorflow nojit (800): faster" in row


def test_leanest_ranks_by_the_step_allocator_peak_alone_and_names_a_stack_that_lacks_it(tmp_path):
    """Leanest compares the allocator peak of a step (alloc_peak_mib) alone: a row with only another quantity (state +
    saved activations, a CPU allocator's absolute peak) is never ranked against it; the cell names the stack that
    lacks the measure and its null_reason, in one line; the Memory section's sentence reads the same decision."""
    import pandas as pd

    from bench.report.sections.memory import leanest_sentence
    d = _run(tmp_path)
    common = {"run_id": d.name, "status": "ok", "model": "resnet20_v1", "device": "cpu", "precision": "fp32",
              "batch_size": 8, "measurement": "train", "oom": False}
    append_row(d / "memory.csv", "memory", {**common, **TORCH, "job_id": "m/t", "saved_activations_mib": 90.0,
                                            "state_plus_activations_mib": 100.0, "alloc_peak_mib": 95.0,
                                            "alloc_peak_kind": "runtime"})
    append_row(d / "memory.csv", "memory", {**common, **KERAS, "job_id": "m/k", "cpu_alloc_peak_mib": 126.0,
                                            "null_reason": "keras/tensorflow: no saved-for-backward measure; "
                                            "keras/tensorflow: no CPU allocator peak: TensorFlow started without BFC"})
    cell = str(leanest_cells({"memory": pd.read_csv(d / "memory.csv")}, [])["resnet20_v1"])
    assert cell.startswith("[not comparable]") and "\n" not in cell
    assert "keras/tensorflow nojit has no allocator peak of a training step: no CPU allocator peak: TensorFlow " \
           "started without BFC" in cell and "torch eager" not in cell  # only the stack that lacks it is named
    assert not re.search(r"\d\.\d+x", cell)  # no ratio of unlike measures
    row = _board_row((render(d, tmp_path / "rep").parent / "index.md").read_text(), "resnet20_v1")
    assert "not comparable" in row and not re.search(r"\d\.\d+x", row.split(" | ")[3])
    # the same measure on every side (a compile-time one labelled so): the leanest is named with its ratio
    for stack, mib, kind in ((KERAS, 80.0, "runtime"), (TORCH, 100.0, "runtime"),
                             ({"framework": "keras", "backend": "jax", "exec_mode": "jit"}, 120.0, "compile-time")):
        append_row(d / "memory.csv", "memory", {**common, **stack, "job_id": f"m2/{stack['backend']}", "model": "plain20",
                                                "alloc_peak_mib": mib, "alloc_peak_kind": kind,
                                                "state_plus_activations_mib": 10.0})  # never ranked by
    df = pd.read_csv(d / "memory.csv")
    cell = str(leanest_cells({"memory": df}, [])["plain20"])
    assert cell.startswith("[keras/tensorflow nojit 80.0 MiB]") and "0.800x of torch eager 100.0 MiB; 1 more" in cell
    sentence = leanest_sentence(df)[0]
    assert "plain20: keras/tensorflow nojit (batch 8" in sentence and "keras/jax jit 120.0 MiB (compile-time)" in sentence
    assert "resnet20_v1: not comparable (keras/tensorflow nojit has no allocator peak" in sentence


def _profile(d, stack, step, layers):
    base = {"run_id": d.name, "status": "ok", "model": "resnet20_v1", "device": "cpu", "precision": "fp32",
            "batch_size": 8, "measurement": "train", **stack, "job_id": f"p/{stack['backend']}"}
    for name, kind, phase, ms in layers:
        append_row(d / "profile.csv", "profile", {**base, "layer": name, "kind": kind, "phase": phase, "ms_per_step": ms})
    append_row(d / "profile.csv", "profile", {**base, "layer": "(step)", "ms_per_step": step, "profiled_step_ms": step,
                                              "coverage": 0.9, "trace_path": f"traces/{stack['backend']}.json.gz"})


def test_why_names_the_largest_attributed_difference(tmp_path):
    d = _run(tmp_path)
    _profile(d, TORCH, 10.0, [("conv1", "conv", "forward", 3.0), ("conv1", "conv", "backward", 4.0),
                              ("bn1", "batchnorm", "forward", 2.0), ("(unattributed)", "other", "other", 1.0)])
    _profile(d, KERAS, 24.0, [("conv1", "conv", "forward", 4.0), ("conv1", "conv", "backward", 12.0),
                              ("bn1", "batchnorm", "forward", 5.0), ("(unattributed)", "other", "other", 3.0)])
    (d / "traces").mkdir()
    (d / "traces" / "tensorflow.json.gz").write_bytes(b"x")
    import pandas as pd
    cell = str(why_cells({"profile": pd.read_csv(d / "profile.csv"), "meta": {}, "dir": d}, [], ["resnet20_v1", "plain20"])[
        "resnet20_v1"])
    # conv backward differs by 8 of the 14 ms gap; batchnorm forward 3, conv forward 1, unattributed 2
    assert cell.startswith("[conv backward](traces/tensorflow.json.gz): 8.0 ms, most of the 14.0 ms gap (57%)"), cell
    assert "keras/tensorflow nojit 24.0 vs torch eager 10.0 ms" in cell
    none = str(why_cells({"profile": None, "meta": {"device": "cpu"}}, [], ["plain20"])["plain20"])
    assert none == "no profile in this run: `python -m bench.profile plain20 --device cpu` profiles both twins"
    md = (render(d, tmp_path / "rep").parent / "index.md").read_text()
    assert "[conv backward](traces/tensorflow.json.gz)" in _board_row(md, "resnet20_v1")
    assert (tmp_path / "rep" / "traces" / "tensorflow.json.gz").is_file()  # the linked trace is inside the report


def _svg_colours(svg: str) -> dict:
    """{implementation id: set of colours} of the elements each figure drew for it (matplotlib writes the gid as a
    <g id=...> around the element): its fill (bars, markers), else its stroke (lines)."""
    out = {}
    for gid, body in re.findall(r'<g id="(impl-[a-z0-9-]+?)(?:_\d+)?">(.*?)</g>', svg, flags=re.S):
        colour = re.search(r"fill: (#[0-9a-f]{6})", body) or re.search(r"stroke: (#[0-9a-f]{6})", body)
        if colour:
            out.setdefault(gid, set()).add(colour.group(1))
    return out


def test_each_implementation_keeps_one_colour_across_figures(tmp_path):
    run = make_run(tmp_path / "results")
    out = render(run, tmp_path / "rep").parent
    seen, figures = {}, 0
    for svg in sorted(out.glob("*.svg")):
        colours = _svg_colours(svg.read_text())
        figures += bool(colours)
        for gid, c in colours.items():
            seen.setdefault(gid, set()).update(c)
    assert figures >= 4  # throughput (2), memory, accuracy per epoch, params vs accuracy
    assert set(seen) == {"impl-torch", "impl-keras-tensorflow"}
    assert all(len(c) == 1 for c in seen.values()), seen  # one colour each, in every figure
    assert seen["impl-torch"] != seen["impl-keras-tensorflow"]


def test_a_compare_report_opens_with_its_regressions_then_improvements(tmp_path):
    from test_regressions import make_run as throughput_run
    base = throughput_run(tmp_path / "results", "base", seed=0, slow=("jax", "jit"), factor=1.4)
    run = throughput_run(tmp_path / "results", "new", seed=1, slow=("torch", "step-compile"), factor=1.3)
    index = render(run, tmp_path / "rep", compare_dir=base)
    board = index.with_name("index.md").read_text().split("## Scoreboard")[1].split("\n## ")[0]
    assert "Against base: 2 regression(s) and 2 improvement(s) in 6 throughput job(s) in common" in board
    first = board.split("**regressions, then improvements, against the compared run**")[1].split("**")[0]
    rows = [ln for ln in first.splitlines() if ln.startswith("| [")]
    assert [ln.split("](")[0][3:] for ln in rows] == ["slower", "slower", "faster", "faster"]
    assert all("torch step-compile" in ln for ln in rows[:2]) and all("keras/jax jit" in ln for ln in rows[2:])
    assert board.index("regressions, then improvements") < board.index("one row per model")


def test_flagged_rows_are_drawn_hatched_and_named_in_the_legend_only_when_drawn(tmp_path):
    from test_regressions import make_run as throughput_run
    clean = throughput_run(tmp_path / "results", "clean", seed=0)
    busy = throughput_run(tmp_path / "results", "busy", seed=0, flagged=("jax", "jit"))
    legend = "hatched, faded: flagged (contended / unstable), no verdict"
    svg = (render(busy, tmp_path / "busy").parent / "throughput_train_fp32_b16.svg").read_text()
    assert legend in svg and "<pattern id=" in svg  # a hatch is drawn
    svg = (render(clean, tmp_path / "clean").parent / "throughput_train_fp32_b16.svg").read_text()
    assert legend not in svg and "<pattern" not in svg  # nothing flagged: no hatch, no legend entry for one


def test_a_cell_the_run_cannot_answer_names_the_command_that_does(tmp_path):
    """A smoke run on a CPU: a model with no epochs rows says it was not trained in smoke and why (minutes on a
    CPU), and which suite trains it; a model with no throughput rows says which suite times it."""
    from bench.report.sections.scoreboard import section_scoreboard
    d = _run(tmp_path)
    write_json_atomic(d / "run_meta.json", {"run_id": d.name, "suite": "smoke", "device": "cpu"})
    _throughput(d, TORCH, 5.0, 0, model="densenet40_k12_memeff")
    run = {"meta": {"suite": "smoke", "device": "cpu"}, "dir": d,
           "throughput": __import__("pandas").read_csv(d / "throughput.csv")}
    table = section_scoreboard(run, tmp_path).tables[0][1]
    row = table.iloc[0]
    assert str(row["same accuracy?"]) == ("not trained in the smoke suite (minutes on a CPU): "
                                          "`python -m bench.run --suite train --models densenet40_k12_memeff --device cpu`")
    assert str(row["fastest inference"]).startswith("not timed in the smoke suite: `python -m bench.run --suite throughput")
    assert str(row["leanest (training step)"]).startswith("not measured in the smoke suite: `python -m bench.run --suite memory")



def test_the_why_cell_and_the_profile_section_give_one_figure(tmp_path):
    """The smoke report gave one gap as two figures ("8.2 of the 19.0 ms gap (43%)" on the board, "explains most
    of the 19.0 ms gap (8.3 ms, 44%)" below): both now read profile.gap_why, and "most" needs more than half."""
    import pandas as pd

    from bench.report.sections.profile import _split, gap_sentences
    d = _run(tmp_path)
    _profile(d, TORCH, 10.0, [("conv1", "conv", "forward", 3.0), ("conv1", "conv", "backward", 4.0),
                              ("bn1", "batchnorm", "forward", 2.0), ("(unattributed)", "other", "other", 1.0)])
    _profile(d, KERAS, 29.0, [("conv1", "conv", "forward", 7.0), ("conv1", "conv", "backward", 12.2),
                              ("bn1", "batchnorm", "forward", 5.0), ("(unattributed)", "other", "other", 4.8)])
    df = pd.read_csv(d / "profile.csv")
    cell = str(why_cells({"profile": df, "meta": {}, "dir": d}, [], ["resnet20_v1"])["resnet20_v1"])
    (sentence,) = gap_sentences(*_split(df[df.status == "ok"]))
    figure = re.search(r"^\[conv backward\]\([^)]*\): (8\.2 ms, of the 19\.0 ms gap \(43%\))", cell)
    assert figure, cell
    assert f"conv backward: {figure.group(1)}" in sentence, sentence
    assert "most" not in cell and "most" not in sentence


def test_no_measurable_difference_says_which_condition_it_missed():
    """"1.10x [1.039, 1.121] ... no measurable difference": the interval excludes 1, so the cell must say why."""
    from bench.report.common import no_difference_why
    from bench.results.stats import ALPHA, Comparison
    t, small = 1 / 1.1, ALPHA / 10  # a 1.10x speed ratio; a p that passes the test
    assert no_difference_why(Comparison(t, 1 / 1.121, 1 / 1.039, 0.2, "no measurable difference", 10, 10), 0.05) \
        == f"p 0.2 >= {ALPHA:g}"
    q = Comparison(t, 1 / 1.121, 1 / 1.039, small, "no measurable difference", 10, 10, q=0.08)
    assert no_difference_why(q, 0.05) == f"q 0.08 >= {ALPHA:g} after Benjamini-Hochberg (p {small:.2g})"
    assert no_difference_why(Comparison(1 / 1.03, 0.96, 0.98, small, "", 10, 10), 0.05) == "an effect under the 5% minimum"
    assert no_difference_why(Comparison(1 / 1.2, 0.7, 1.01, small, "", 10, 10), 0.05) == "its 95% interval includes 1"


def test_the_fastest_cell_says_why_there_is_no_difference(tmp_path):
    d = _run(tmp_path)
    _throughput(d, TORCH, 10.0, 1)
    _throughput(d, KERAS, 10.05, 2)  # 0.5% apart: under the minimum effect
    run = {"throughput": __import__("pandas").read_csv(d / "throughput.csv"), "meta": {}}
    cell = str(fastest_cells(run, [])[("resnet20_v1", "fp32", 8, "train")])
    assert re.search(r": no measurable difference \((p \S+ >= |an effect under the \d+% minimum)", cell), cell
