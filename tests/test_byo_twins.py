"""Your own twins (issue 40): a twins file loaded, its weights paired with no shared names, proven one network or
diagnosed (first differing layer pair and the likely cause), and measured through bench.run like a built-in.

Pairs: ``examples/my_twins.py`` (tiny_mix) and ``tests/twins_pairs.py`` (branchy and its broken copies)."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "my_twins.py")
PAIRS = str(ROOT / "tests" / "twins_pairs.py")


@pytest.fixture(scope="module")
def loaded():
    """The two files' twins registered in this process for the module's tests, then forgotten (other tests list
    every registered model)."""
    from bench.zoo import load_user_twins
    from bench.zoo.registry import forget_user_twins
    yield load_user_twins([EXAMPLE, PAIRS])
    forget_user_twins()


@pytest.mark.parametrize("name", ["tiny_mix", "branchy"])
def test_pairs_with_no_shared_names_are_proven_one_network(loaded, name):
    from bench.twins.proof import prove
    r = prove(name)
    assert r["ok"], r.get("first_difference")
    assert r["pairing"] == "execution order" and r["precision"] == "fp64"
    assert all(row["ok"] and row["max_abs_diff"] is not None for row in r["layers"])
    kinds = {row["kind"] for row in r["layers"]}
    assert kinds == {"conv", "bn", "dense"}


@pytest.mark.parametrize("name,torch_layer,keras_layer,cause", [
    ("broken_eps", "parts.first_bn", "k_a_norm", "BatchNorm epsilon: 1e-05 in torch, 0.001 in keras"),
    ("broken_same", "parts.shrink", "k_b", "keras 'same' at stride 2 pads bottom/right only"),
    ("broken_flatten", "classifier", "k_out", "flatten order"),
])
def test_a_broken_pair_names_its_first_differing_layer_and_cause(loaded, name, torch_layer, keras_layer, cause):
    from bench.twins.proof import explain, prove
    r = prove(name)
    assert not r["ok"]
    f = r["first_difference"]
    assert (f["torch"], f["keras"]) == (torch_layer, keras_layer) and f["max_abs_diff"] > f["bound"]
    assert cause in f["likely_cause"]
    text = " ".join(explain(r))
    assert torch_layer in text and keras_layer in text and cause in text


def test_a_bn_momentum_convention_fails_the_proof_and_training_names_the_pair(loaded):
    """Momentum leaves one inference pass alone: the lint fails the proof, and --train's BN statistics name the pair."""
    from bench.twins.proof import explain, prove
    from bench.twins.train_parity import explain as explain_train
    from bench.twins.train_parity import train_parity
    r = prove("broken_momentum")
    assert not r["ok"] and all(row["ok"] for row in r["layers"])
    assert "torch m = 1 - keras m" in " ".join(explain(r)) and r["first_difference"]["keras"] == "k_a_norm"
    t = train_parity("broken_momentum", steps=1, batch=4, recipe="smoke")
    assert not t["ok"] and t["per_step"][0]["bn_stats_where"].startswith("k_a_norm:")
    text = " ".join(explain_train(t))
    assert "parts.first_bn <-> k_a_norm" in text and "momentum (torch m = 1 - keras m)" in text


def test_a_tensor_with_no_partner_is_listed_by_name_and_shape(loaded):
    from bench.twins.proof import ProofError, prove
    with pytest.raises(ProofError, match=r"unpaired in torch: classifier\.bias \(10,\); unpaired in keras: none"):
        prove("broken_orphan")


def test_pairing_strategies_in_order(loaded):
    """The zoo pairs by names; an explicit map wins over execution order; a wrong map is named."""
    from bench.twins.pairing import PairingError, pair_twins
    from bench.zoo import build, twin_of
    _, how = pair_twins(build("resnet20_v1", "torch", depth=8), build("resnet20_v1", "keras", depth=8), 32, 3)
    assert how == "names"
    t = twin_of("branchy")
    tm, km = t.build("torch"), t.build("keras")
    pairs, how = pair_twins(tm, km, 32, 3, {"classifier": "k_out"})
    assert how == "explicit map + execution order" and ("classifier", "k_out") in {(p.torch_name, p.keras_name) for p in pairs}
    with pytest.raises(PairingError, match="whose kinds or shapes differ"):
        pair_twins(tm, km, 32, 3, {"classifier": "k_a"})


def test_lint_reads_bn_momentum_convention():
    from keras import layers
    from torch import nn

    from bench.twins.pairing import Pair
    from bench.twins.proof import lint
    bn_k = layers.BatchNormalization(momentum=0.1, epsilon=1e-5)  # the torch value given to keras: wrong
    bn_k.build((None, 4, 4, 3))
    found = lint([Pair("bn", "bn_k", "bn", nn.BatchNorm2d(3, momentum=0.1), bn_k)])
    assert len(found) == 1 and "torch m = 1 - keras m" in found[0].cause
    bn_k = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    bn_k.build((None, 4, 4, 3))
    assert lint([Pair("bn", "bn_k", "bn", nn.BatchNorm2d(3, momentum=0.1), bn_k)]) == []


BAD = {
    "import": ("import nosuchmodule_xyz\nTWINS = {}\n", "does not import: ModuleNotFoundError: No module named "
                                                        "'nosuchmodule_xyz' (line 1)"),
    "no_twins": ("X = 1\n", "defines no TWINS"),
    "raises": ("def t(): raise RuntimeError('boom')\ndef k(): pass\nTWINS = {'mine': (t, k)}\n",
               "its torch builder raised RuntimeError: boom"),
    "wrong_type": ("import torch\ndef t(): return 3\ndef k(): pass\nTWINS = {'mine': (t, k)}\n",
                   "its torch builder returned builtins.int, not a torch.nn.Module"),
    "clash": ("TWINS = {'resnet20_v1': (lambda: 0, lambda: 0)}\n", "has the name of a built-in model"),
    "kind": ("import torch, keras\nfrom torch import nn\n"
             "def t(): return nn.Sequential(nn.Flatten(), nn.LayerNorm(3072), nn.Linear(3072, 10))\n"
             "def k():\n    i = keras.Input((32, 32, 3))\n"
             "    return keras.Model(i, keras.layers.Dense(10)(keras.layers.Flatten()(i)))\n"
             "TWINS = {'mine': (t, k)}\n", "layer kinds the pairing cannot handle: 1 (LayerNorm)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_twins_files_are_one_sentence_exit_2(case, tmp_path, capsys, monkeypatch):
    from bench.twins.__main__ import main
    monkeypatch.delenv("TWINBENCH_TWINS", raising=False)
    text, message = BAD[case]
    f = tmp_path / f"bad_{case}.py"
    f.write_text(text)
    try:
        code = main(["--twins", str(f)])
    finally:
        from bench.zoo.registry import forget_user_twins
        forget_user_twins()
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err


def _env():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    env.pop("TWINBENCH_TWINS", None)
    return env


def _cli(*argv, timeout=900):
    return subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_twins_command_proves_and_trains_the_example():
    p = _cli("-m", "bench.twins", "--twins", EXAMPLE, "--train", "--steps", "1", "--batch", "4")
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith("{")))
    assert r["model"] == "tiny_mix" and r["ok"] and r["pairs"]["dense"] == "head <-> dense"
    # a built-in twin beside users' twins, in one process: one path (bench.twins.proof), one output shape
    p = _cli("-m", "bench.twins", "--twins", PAIRS, "resnet20_v1", "branchy", "broken_eps")
    assert p.returncode == 1 and "first layer pair that differs is torch parts.first_bn <-> keras k_a_norm" in p.stderr
    assert "Traceback" not in p.stderr
    lines = p.stdout.splitlines()
    rows = {json.loads(ln)["model"]: json.loads(ln) for ln in lines if ln.startswith("{")}
    builtin, user = rows["resnet20_v1"], rows["branchy"]
    assert builtin["source"] == "bench.zoo" and builtin["ok"] and builtin["pairing"] == "names"
    assert builtin["pairs"] == len(builtin["layers"]) > 20 and all(r["ok"] for r in builtin["layers"])
    assert builtin["torch_params"] == builtin["keras_params"] and builtin["max_abs_diff"] <= builtin["bound"]
    assert set(builtin) == set(user) and set(builtin["layers"][0]) == set(user["layers"][0])
    said = [ln for ln in lines if ln.startswith("twin ")]  # one sentence per twin, just before its JSON line
    assert [ln.split("'")[1] for ln in said] == ["resnet20_v1", "branchy", "broken_eps"]
    assert "'resnet20_v1' (bench.zoo)" in said[0] and "proven one network" in said[0] and "not proven" in said[2]


def test_models_lists_user_twins(capsys):
    from bench.models import main
    from bench.zoo.registry import forget_user_twins
    try:
        assert main(["tiny*", "--twins", EXAMPLE]) == 0
    finally:
        forget_user_twins()
    out = capsys.readouterr().out
    assert "tiny_mix" in out and "user twin from my_twins.py" in out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_example_runs_through_run_profile_and_report(tmp_path):
    """throughput (Keras: its workers load the file again; the report's scoreboard row), memory and profile (torch,
    --no-parity). Small on purpose: one proof, batch 4, one profiled step."""
    import hashlib
    sha = hashlib.sha256(Path(EXAMPLE).read_bytes()).hexdigest()
    common = ["--device", "cpu", "--precision", "fp32", "--out", str(tmp_path / "r")]
    p = _cli("-m", "bench.run", "--twins", EXAMPLE, "--suite", "throughput", "--models", "tiny_mix", "--frameworks",
             "keras", "--keras-backend", "tensorflow", "--batch-sizes", "4", "--reports", str(tmp_path / "rep"), *common)
    assert p.returncode == 0, p.stderr[-3000:]
    run = next((tmp_path / "r").iterdir())
    rows = _rows(run / "throughput.csv")
    assert {r["framework"] for r in rows} == {"keras"} and all(r["status"] == "ok" for r in rows)
    assert all(r["twin_sha256"] == sha and r["twin_source"] == EXAMPLE and r["parity"] == "proven" for r in rows)
    html = (tmp_path / "rep" / run.name / "index.html").read_text()
    assert "tiny_mix" in html.split("Scoreboard", 1)[1][:20000]
    p = _cli("-m", "bench.run", "--twins", EXAMPLE, "--suite", "memory", "--models", "tiny_mix", "--frameworks",
             "torch", "--batch-sizes", "4", "--no-report", "--no-parity", *common)
    assert p.returncode == 0, p.stderr[-3000:]
    mem = [r for d in (tmp_path / "r").iterdir() if (d / "memory.csv").exists() for r in _rows(d / "memory.csv")]
    assert mem and all(r["status"] == "ok" and r["parity"] == "unproven" for r in mem)
    p = _cli("-m", "bench.profile", "tiny_mix", "--twins", EXAMPLE, "--frameworks", "torch", "--steps", "1",
             "--batch-size", "4", "--no-report", "--no-parity", *common)
    assert p.returncode == 0, p.stderr[-3000:]
    prof = [r for d in (tmp_path / "r").iterdir() if (d / "profile.csv").exists() for r in _rows(d / "profile.csv")]
    assert prof and all(r["status"] == "ok" and r["model"] == "tiny_mix" for r in prof)


def test_run_refuses_a_twin_that_fails_its_proof(tmp_path):
    p = _cli("-m", "bench.run", "--twins", PAIRS, "--suite", "throughput", "--models", "broken_same", "--frameworks",
             "torch", "--batch-sizes", "4", "--device", "cpu", "--out", str(tmp_path / "r"), "--no-report")
    assert p.returncode == 2, p.stderr[-2000:]
    assert "keras 'same' at stride 2" in p.stderr and "broken_same refused" in p.stderr and "Traceback" not in p.stderr
    assert not any((tmp_path / "r").glob("*/throughput.csv"))


def test_history_and_compare_keep_two_networks_that_share_a_name_apart():
    import pandas as pd

    from bench.report.common import distinct_twins
    from bench.report.sections.compare import THROUGHPUT_KEYS, _ok
    row = {"status": "ok", "model": "mine", "framework": "torch", "backend": "torch", "exec_mode": "eager",
           "measurement": "train", "precision": "fp32", "batch_size": 4, "input": "synthetic"}
    a = pd.DataFrame([{**row, "twin_sha256": "a" * 64}, {**row, "model": "resnet20_v1", "twin_sha256": None}])
    b = pd.DataFrame([{**row, "twin_sha256": "b" * 64}, {**row, "model": "resnet20_v1", "twin_sha256": None}])
    ka = {k for k, _ in _ok(a, THROUGHPUT_KEYS).groupby(THROUGHPUT_KEYS)}
    kb = {k for k, _ in _ok(b, THROUGHPUT_KEYS).groupby(THROUGHPUT_KEYS)}
    assert len(ka & kb) == 1 and next(iter(ka & kb))[0] == "resnet20_v1"  # the built-in joins, the two 'mine' do not
    assert list(distinct_twins(a).model) == ["mine@" + "a" * 12, "resnet20_v1"]


def test_a_twins_file_imports_its_neighbours_and_carries_its_hash(tmp_path):
    import hashlib

    from bench.zoo import load_user_twins, twin_of
    from bench.zoo.registry import forget_user_twins
    (tmp_path / "neighbour_layers_x.py").write_text("def t():\n    return 't'\n\ndef k():\n    return 'k'\n")
    f = tmp_path / "twins_with_neighbour.py"
    f.write_text("from neighbour_layers_x import k, t\nTWINS = {'nb_twin': {'torch': t, 'keras': k, "
                 "'input_shape': (16, 16, 1), 'classes': 4}}\n")
    try:
        assert load_user_twins([str(f)]) == ["nb_twin"]
        tw = twin_of("nb_twin")
        assert (tw.input_size, tw.input_channels, tw.num_classes) == (16, 1, 4)
        assert tw.sha256 == hashlib.sha256(f.read_bytes()).hexdigest() and tw.source == str(f.resolve())
    finally:
        forget_user_twins()


def test_run_refuses_a_twin_it_cannot_measure_before_any_job(tmp_path, monkeypatch, capsys):
    from bench.run import main
    from bench.zoo.registry import forget_user_twins
    monkeypatch.setenv("TWINBENCH_TWINS", "")  # restored after the test: the run sets it for its jobs
    f = tmp_path / "small_twins.py"
    f.write_text("TWINS = {'gray16': {'torch': lambda: 0, 'keras': lambda: 0, 'input_shape': (16, 16, 1)}}\n")
    try:
        code = main(["--twins", str(f), "--suite", "memory", "--models", "gray16", "--frameworks", "torch",
                     "--batch-sizes", "4", "--device", "cpu", "--out", str(tmp_path / "r"), "--no-report"])
    finally:
        forget_user_twins()
    err = capsys.readouterr().err
    assert code == 2 and "gray16 (16x16x1 in, 10 classes) is not" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.csv"))


def test_entry_point_group_provides_twins(tmp_path, monkeypatch):
    """An installed package's ``twinbench.twins`` entry point (``module:attr``) is loaded beside --twins files."""
    import importlib.metadata

    from bench.zoo import get_entry, list_models
    from bench.zoo.registry import forget_user_twins
    (tmp_path / "pkg_twins_xyz.py").write_text("from twins_pairs import Branchy, branchy_keras\n"
                                               "MINE = {'pkg_branchy': (Branchy, branchy_keras)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(PAIRS).parent))
    monkeypatch.delenv("TWINBENCH_TWINS", raising=False)
    ep = importlib.metadata.EntryPoint("mine", "pkg_twins_xyz:MINE", "twinbench.twins")
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [ep] if group == "twinbench.twins" else [])
    forget_user_twins()
    try:
        assert "pkg_branchy" in list_models("pkg_*")
        assert get_entry("pkg_branchy").twin.source == "pkg_twins_xyz:MINE"
    finally:
        forget_user_twins()
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    assert list_models("pkg_*") == []


def test_entry_points_are_read_once_per_process(monkeypatch):
    """Every registry lookup asks for the entry-point twins; the installed distributions are scanned once per process
    (a report's thousands of lookups each scanning them took 23 s), and again after ``forget_user_twins``."""
    import importlib.metadata

    from bench.zoo import get_entry
    from bench.zoo.registry import forget_user_twins
    calls = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: calls.append(group) or [])
    forget_user_twins()
    for _ in range(50):
        get_entry("resnet20_v1")
    assert calls == ["twinbench.twins"]
    forget_user_twins()
    get_entry("resnet20_v1")
    assert len(calls) == 2
