"""Bad input to every command: exit 2, one ``error:`` sentence naming the thing, nothing run, no traceback.

One row per case: the next flag is one line. ``{tmp}`` is a fresh folder, ``{afile}`` a regular file in it,
``{run}`` a minimal run folder (run_meta.json alone) under ``{tmp}/results``. Commands are called in-process
(``main(argv)``; argparse's own errors arrive as SystemExit(2)), a few rows also as a real subprocess.
Every option of ``bench.run`` and ``bench.report`` must appear in some row (test_every_flag_has_a_row).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE1 = ["--suite", "smoke", "--models", "resnet20_v1", "--frameworks", "torch"]
MEM1 = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4"]

# (command, argv, the text its error must hold)
ROWS = [
    # ---- bench.run
    ("run", [], "give --suite"),
    ("run", ["--suite", "smoek"], "unknown suite 'smoek'"),
    ("run", ["--suite", ""], "--suite is empty"),
    ("run", ["--list=yes"], "ignored explicit argument"),
    ("run", ["--list", "--models", "nosuch"], "unknown model 'nosuch'"),
    ("run", ["--suite", "smoke", "--dry-run=1"], "ignored explicit argument"),
    ("run", ["--suite", "smoke", "--models", ""], "--models is empty"),
    ("run", ["--suite", "smoke", "--models", ","], "--models is empty"),
    ("run", ["--suite", "smoke", "--models", "nosuch", "--dry-run"], "unknown model 'nosuch'"),
    ("run", ["--suite", "smoke", "--frameworks", ""], "--frameworks is empty"),
    ("run", ["--suite", "smoke", "--frameworks", "mxnet"], "unknown framework"),
    ("run", ["--suite", "smoke", "--keras-backend", ""], "unknown --keras-backend ''; choose from"),
    ("run", ["--suite", "smoke", "--keras-backend", "theano"], "unknown --keras-backend theano"),
    ("run", ["--suite", "smoke", "--precision", "fp8"], "--precision takes fp32, bf16, fp16"),
    ("run", ["--suite", "smoke", "--precision", ""], "--precision is empty"),
    ("run", ["--suite", "smoke", "--batch-sizes", "a,b"], "--batch-sizes must be integers"),
    ("run", ["--suite", "smoke", "--batch-sizes", "0"], "--batch-sizes must be positive"),
    ("run", ["--suite", "smoke", "--batch-sizes", "-8"], "--batch-sizes must be positive"),
    ("run", ["--suite", "smoke", "--epochs", "0"], "--epochs must be >= 1"),
    ("run", ["--suite", "smoke", "--epochs", "two"], "invalid int value"),
    ("run", ["--suite", "smoke", "--recipe", "nope"], "unknown recipe 'nope'"),
    ("run", ["--suite", "smoke", "--recipe", ""], "--recipe is empty"),
    ("run", ["--suite", "smoke", "--exec-mode", "graph"], "unknown --exec-mode"),
    ("run", ["--suite", "smoke", "--frameworks", "torch", "--exec-mode", "jit"], "--exec-mode jit matches no job"),
    ("run", ["--suite", "smoke", "--device", "tpu"], "invalid choice"),
    ("run", [*SMOKE1, "--data-dir", "/proc/no-such/cifar", "--out", "{tmp}/r"], "/proc/no-such/cifar and that folder cannot be created"),
    ("run", [*SMOKE1, "--data-dir", "{afile}", "--out", "{tmp}/r"], "is a file, not a directory"),
    ("run", ["--suite", "smoke", "--data-dir", ""], "--data-dir is empty"),
    ("run", [*MEM1, "--out", "{afile}/results"], "is a file, not a directory; choose another --results"),
    ("run", [*MEM1, "--out", "/proc/no-such/results"], "is not writable"),
    ("run", ["--suite", "smoke", "--out", " "], "--results (--out) is empty"),
    ("run", ["--suite", "smoke", "--results", " "], "--results (--out) is empty"),
    ("run", [*MEM1, "--out", "{tmp}/r", "--reports", "{afile}/reports"], "choose another --reports"),
    ("run", ["--resume", "no-such-run", "--out", "{tmp}"], "no run to resume"),
    ("run", ["--resume", ""], "--resume is empty"),
    ("run", ["--resume", "../elsewhere"], "--resume takes a run id"),
    ("run", ["--resume", "broken", "--out", "{tmp}/results"], "run_meta.json cannot be read"),
    ("run", ["--resume", "newer", "--out", "{tmp}/results"], "newer than this code's"),
    ("run", ["--suite", "smoke", "--job-timeout", "-5"], "--job-timeout must be a positive number"),
    ("run", ["--suite", "smoke", "--job-timeout", "0"], "--job-timeout must be a positive number"),
    ("run", ["--suite", "smoke", "--job-timeout", "nan"], "--job-timeout must be a positive number"),
    ("run", ["--suite", "smoke", "--job-timeout", "soon"], "invalid float value"),
    ("run", ["--suite", "smoke", "--repeats", "0"], "--repeats must be >= 1"),
    ("run", ["--suite", "train", "--find-max-batch", "--dry-run"], "--find-max-batch bisects the batch sweeps of memory"),
    ("run", ["--suite", "smoke", "--repeats", "two"], "invalid int value"),
    ("run", ["--suite", "smoke", "--steps", "0"], "--steps must be >= 1"),
    ("run", ["--suite", "scaling", "--replicas", "0"], "--replicas takes counts of 1 or more"),
    ("run", ["--suite", "scaling", "--replicas", "1,x"], "--replicas takes comma-separated counts"),
    ("run", ["--suite", "scaling", "--strong", "--batch-sizes", "15", "--dry-run"], "does not split evenly over 1, 2"),
    ("profile", ["nosuch", "--dry-run"], "unknown model 'nosuch'"),
    ("profile", ["resnet20_v1", "--steps", "0", "--dry-run"], "--steps must be >= 1"),
    ("profile", ["resnet20_v1", "--batch-size", "0", "--dry-run"], "--batch-sizes must be positive"),
    ("profile", ["resnet20_v1", "--frameworks", "nope", "--dry-run"], "unknown framework(s)"),
    ("profile", ["resnet20_v1", "--precision", "fp8", "--dry-run"], "--precision takes fp32, bf16, fp16"),
    ("run", ["--suite", "smoke", "--no-report=1"], "ignored explicit argument"),
    ("run", ["--suite", "smoke", "--no-roofs=1"], "ignored explicit argument"),
    ("run", ["--suite", "smoke", "--executor", "slurm"], "invalid choice"),
    ("run", ["--suite", "smoke", "--ray-address", "auto"], "only apply to --executor ray"),
    ("run", ["--suite", "smoke", "--executor", "ray", "--ray-address", "not an address"], "--ray-address takes auto"),
    ("run", ["--suite", "smoke", "--executor", "ray", "--ray-retries", "-1"], "--ray-retries must be >= 0"),
    ("run", ["--suite", "smoke", "--executor", "ray", "--ray-retries", "x"], "invalid int value"),
    ("run", ["--suite", "smoke", "--executor", "ray", "--ray-jobs-per-device", "0"], "--ray-jobs-per-device must be >= 1"),
    ("run", ["--suite", "smoke", "--isolation", "shared"], "argument --isolation: invalid choice: 'shared'"),
    ("run", ["--suite", "smoke", "--executor", "ray", "--isolation", "reused"],
     "--isolation reused only applies to --executor local"),
    # ---- bench.report
    ("report", ["no-such-run", "--results", "{tmp}"], "no results directory"),
    ("report", ["{tmp}"], "is not a TwinBench results directory"),
    ("report", [""], "RUN_ID is empty"),
    ("report", ["{run}", "--results", "{tmp}/results", "--fail-on-regression", "10"], "needs --compare"),
    ("report", ["{run}", "--results", "{tmp}/results", "--compare", "{run}", "--fail-on-regression", "-5"],
     "--fail-on-regression must be a positive percentage"),
    ("report", ["{run}", "--results", "{tmp}/results", "--min-effect", "-1"], "--min-effect must be"),
    ("report", ["{run}", "--min-effect", "lots"], "invalid float value"),
    ("report", ["--latest", "--results", "{tmp}/none"], "no runs under"),
    ("report", ["--latest=1"], "ignored explicit argument"),
    ("report", ["--latest", "--results", "{afile}"], "is a file, not a directory"),
    ("report", ["--results", ""], "--results is empty"),
    ("report", ["{run}", "--compare", "no-such-run", "--results", "{tmp}/results"], "no results directory"),
    ("report", ["{run}", "--compare", ""], "--compare is empty"),
    ("report", ["{run}", "--out", ""], "--reports (--out) is empty"),
    ("report", ["{run}", "--reports", ""], "--reports (--out) is empty"),
    ("report", ["broken", "--results", "{tmp}/results"], "run_meta.json cannot be read"),
    ("report", ["newer", "--results", "{tmp}/results"], "newer than this code's"),
    ("report", ["garbled", "--results", "{tmp}/results"], "without a valid schema_version"),
    ("run", ["--suite", "smoke", "--twins", "{tmp}/no_such_twins.py"], "does not exist"),
    ("run", ["--suite", "smoke", "--no-parity=yes"], "ignored explicit argument"),
    # ---- bench.twins
    ("twins", [], "give a model name"),
    ("twins", ["--twins", "{tmp}/no_such_twins.py"], "does not exist"),
    ("twins", ["nosuch"], "unknown model 'nosuch'"),
    ("twins", ["resnet20_v1", "--backend", "theano"], "unknown Keras backend 'theano'"),
    ("twins", ["resnet20_v1", "--train", "--recipe", "nope"], "--train needs a recipe among"),
    ("twins", ["resnet20_v1", "--train", "--steps", "0"], "--steps >= 1"),
    ("twins", ["resnet20_v1", "--train", "--batch", "1"], "--batch >= 2"),
    ("twins", ["resnet20_v1", "--steps", "x"], "invalid int value"),
    ("twins", ["resnet20_v1", "--precision", "fp16"], "invalid choice"),
    # ---- bench.overhead
    ("overhead", ["--stacks", "mxnet"], "unknown stack"),
    ("overhead", ["--model", "nosuch"], "unknown model 'nosuch'"),
    ("overhead", ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("overhead", ["--steps", "0"], "--steps must be >= 1"),
    ("overhead", ["--repeats", "0"], "--repeats must be >= 1"),
    ("overhead", ["--max-warmup", "-1"], "--max-warmup must be >= 0"),
    ("overhead", ["--precision", "fp8"], "invalid choice"),
    ("overhead", ["--device", "tpu"], "invalid choice"),
    # ---- bench.models, bench.schema
    ("models", ["nosuch*"], "no model matches 'nosuch*'"),
    ("models", ["--bogus"], "unrecognized arguments"),
    # ---- bench.peaks
    ("peaks", ["--device", "tpu"], "invalid choice"),
    ("peaks", ["--remeasure=yes"], "ignored explicit argument"),
    ("schema", ["--bogus"], "unrecognized arguments"),
]
SUBPROCESS = {  # also run as a real process: what a user sees
    ("run", "/proc/no-such/cifar"), ("run", "-5"), ("report", "{afile}"), ("twins", "nosuch"),
}


def _main(command: str):
    import importlib
    module = {"run": "bench.run", "report": "bench.report", "twins": "bench.twins.__main__", "overhead": "bench.overhead",
              "profile": "bench.profile", "peaks": "bench.peaks",
              "models": "bench.models", "schema": "bench.schema"}[command]
    return importlib.import_module(module).main


@pytest.fixture
def places(tmp_path):
    """{tmp}, {afile}, {run}, and run folders that cannot be read: broken (run_meta.json is not JSON), newer (a CSV
    of a newer schema version), garbled (a CSV whose schema_version cells are not numbers)."""
    from bench.results.schema import SCHEMA_VERSION, append_row
    afile = tmp_path / "afile"
    afile.write_text("")
    results = tmp_path / "results"
    for name in ("ok", "broken", "newer", "garbled"):
        (results / name).mkdir(parents=True)
        argv = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4"]
        (results / name / "run_meta.json").write_text(json.dumps({"run_id": name, "argv": argv, "gpu": False}))
    (results / "broken" / "run_meta.json").write_text('{"run_id": "broken", "argv": [')
    append_row(results / "newer" / "memory.csv", "memory", {"run_id": "newer", "job_id": "j", "status": "ok"})
    text = (results / "newer" / "memory.csv").read_text()
    (results / "newer" / "memory.csv").write_text(text.replace(f"\n{SCHEMA_VERSION},", f"\n{SCHEMA_VERSION + 1},"))
    (results / "garbled" / "throughput.csv").write_text("schema_version,run_id\nv1,garbled\n")
    return {"tmp": str(tmp_path), "afile": str(afile), "run": str(results / "ok")}


def _fill(argv, places):
    return [a.format(**places) for a in argv]


@pytest.mark.parametrize("command,argv,message", ROWS, ids=[f"{c}:{' '.join(a) or '(none)'}" for c, a, _ in ROWS])
def test_bad_input_is_exit_2_and_one_sentence(command, argv, message, places, capsys, tmp_path):
    argv = _fill(argv, places)
    try:
        code = _main(command)(argv)
    except SystemExit as e:  # argparse's errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message.format(**places) in errors[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing ran: no run folder


@pytest.mark.parametrize("command,argv,message", [r for r in ROWS if any((r[0], k) == s for s in SUBPROCESS for k in r[1])],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_as_a_process(command, argv, message, places):
    module = {"twins": "bench.twins"}.get(command, f"bench.{command}")
    p = subprocess.run([sys.executable, "-m", module, *_fill(argv, places)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and message.format(**places) in p.stderr and "Traceback" not in p.stderr, p.stderr


@pytest.mark.parametrize("command", ["run", "report"])
def test_every_flag_has_a_row(command):
    import importlib
    ap = importlib.import_module({"run": "bench.run", "report": "bench.report.render"}[command]).build_parser()
    flags = {o for a in ap._actions for o in a.option_strings if o not in ("-h", "--help")}
    used = {a.split("=")[0] for c, argv, _ in ROWS if c == command for a in argv if a.startswith("--")}
    assert flags - used == set(), f"flags of bench.{command} without a bad-input row: {sorted(flags - used)}"


def test_a_selection_that_leaves_no_job_says_what_each_selector_matched(monkeypatch, capsys, tmp_path):
    """No CLI value reaches it today (an empty list is refused first): a suite whose expansion is empty."""
    import bench.run as run
    real = run.expand
    monkeypatch.setattr(run, "expand", lambda suite, opts: [] if opts.frameworks == ("torch",) and opts.models else
                        real(suite, opts))
    code = run.main(["--suite", "smoke", "--models", "resnet20_v1", "--frameworks", "torch", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "the selection matches no job of suite smoke" in err, err
    assert "--models resnet20_v1 alone:" in err and "--frameworks torch alone:" in err
    assert not any(tmp_path.iterdir())
