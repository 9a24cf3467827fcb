"""Faults and bad input (issue #15): preconditions fail fast with exit 2 and one sentence, a full disk never
leaves a broken CSV, the exit status tells failed jobs apart, and a killed run resumes without loss.

Cheap on purpose: bench.run is driven with injected faults (``TWINBENCH_INJECT_FAULT``: crash, oom, hang,
enospc) so that no job imports a framework; ENOSPC is simulated where the write happens.
"""
import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pandas as pd
import pytest

from bench.core.job import Job
from bench.data import DataError, check_cifar10
from bench.pipeline import preflight
from bench.pipeline.suites import Options, expand
from bench.results.schema import append_row, columns
from bench.results.writes import ResultsWriteError, atomic_write

ROOT = Path(__file__).resolve().parents[1]
MEM = "memory/resnet20_v1/torch/fp32/b{}/train/default"
REAL_WRITE = os.write
MEMORY_ARGS = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--no-report"]


def _run(args, out, **extra):
    env = {k: v for k, v in os.environ.items() if k != "TWINBENCH_INJECT_FAULT"}
    env.update(extra)
    return subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _data_copy(cifar_dir, tmp_path) -> Path:
    """A CIFAR-10 folder of symlinks to the real files (cheap); the test replaces the file it breaks."""
    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for f in (cifar_dir / "cifar-10-batches-py").iterdir():
        (d / f.name).symlink_to(f)
    return d


def _replace(link: Path, data: bytes) -> None:
    link.unlink()
    link.write_bytes(data)


# ---- CIFAR-10 checked once, before any job ------------------------------------------------------------

def _truncate_batch_3(d: Path) -> str:
    raw = (d / "data_batch_3").read_bytes()
    _replace(d / "data_batch_3", raw[:-1024])  # 1 KiB short
    return "data_batch_3 is truncated or corrupt"


def _nine_labels(d: Path) -> str:
    import pickle
    meta = pickle.loads((d / "batches.meta").read_bytes(), encoding="bytes")
    meta[b"label_names"] = meta[b"label_names"][:9]
    _replace(d / "batches.meta", pickle.dumps(meta))
    return "lists 9 label names, expected the 10 classes of CIFAR-10"


def _data_dir_is_a_file(d: Path) -> str:
    return "is a file, not a directory"


@pytest.mark.parametrize("breakage", [_truncate_batch_3, _nine_labels, _data_dir_is_a_file])
def test_bad_data_is_refused_before_any_job_starts(breakage, cifar_dir, tmp_path):
    d = _data_copy(cifar_dir, tmp_path)
    expected = breakage(d)
    data_dir = d / "data_batch_1" if breakage is _data_dir_is_a_file else d.parent
    p = _run(["--suite", "smoke", "--data-dir", str(data_dir), "--no-report"], tmp_path / "results")
    assert p.returncode == 2, p.stderr[-2000:]
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0] and "Traceback" not in p.stderr, p.stderr
    if breakage is _data_dir_is_a_file:
        assert f"--data-dir {data_dir} is a file, not a directory" in errors[0]
    else:
        assert "download again" in errors[0]  # what to do
    assert not (tmp_path / "results").exists()  # no job ran, no row, not even an empty run directory


def test_data_is_checked_only_when_a_job_reads_it(cifar_dir, tmp_path):
    d = _data_copy(cifar_dir, tmp_path)
    _truncate_batch_3(d)
    smoke = expand("smoke", Options(frameworks=("torch",), gpu=False))
    needs = [j for j in smoke if preflight.needs_real_data(j)]
    assert {j.kind for j in needs} == {"epochs", "throughput"} and all(
        j.kind == "epochs" or j.input == "real" for j in needs)
    synthetic = [j for j in smoke if not preflight.needs_real_data(j)]
    assert preflight.problems(synthetic, tmp_path / "out", str(d.parent)) == []
    (problem,) = preflight.problems(needs, tmp_path / "out", str(d.parent))
    assert "data_batch_3" in problem
    assert check_cifar10(cifar_dir).name == "cifar-10-batches-py"  # the real data passes
    _nine_labels(d)
    with pytest.raises(DataError, match="batches.meta lists 9 label names"):
        check_cifar10(d.parent)


# ---- other preconditions: GPU, packages, results directory ---------------------------------------------

def test_preconditions_each_say_the_thing_and_the_fix(tmp_path, monkeypatch):
    import importlib.util
    jobs = [Job("memory", "resnet20_v1", "torch", None, "fp32", 8, device="cuda"),
            Job("memory", "resnet20_v1", "keras", "jax", "fp32", 8, device="cuda")]
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "jax" else real_find_spec(name, *a))
    afile = tmp_path / "afile"
    afile.write_text("")
    found = preflight.problems(jobs, afile / "run", None, gpu_visible=lambda: False)
    assert len(found) == 3, found
    gpu, pkg, out = found
    assert "no NVIDIA GPU is visible" in gpu and "--device cpu" in gpu
    assert "the Keras jobs on the jax backend need the jax package" in pkg and ".[jax]" in pkg and "--keras-backend" in pkg
    assert f"the results directory {afile / 'run'} cannot be created: {afile} is a file" in out and "--results" in out
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=100 << 10))
    (space,) = preflight.problems(jobs[:1], tmp_path / "run", None, gpu_visible=lambda: True)
    assert "has 0.1 MiB free" in space and "free space or choose another --results" in space
    assert preflight.expected_bytes(jobs[:1]) > 1 << 20


def test_missing_packages_take_a_list_of_keras_backends(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("jax", "torch") else object())
    found = preflight.missing_packages(["keras"], ["tensorflow", "jax", "torch"])
    assert [f.split(" need")[0] for f in found] == ["the Keras jobs on the jax backend", "the Keras jobs on the torch backend"]
    assert preflight.missing_packages(["keras"], ["tensorflow"]) == []
    (torch_missing,) = preflight.missing_packages(["torch"], [])
    assert "the PyTorch jobs need the torch package" in torch_missing and "--frameworks" in torch_missing


# ---- disk full: no broken CSV, a clear message, --resume finishes --------------------------------------

def _enospc_after(n_ok_bytes: int):
    """An os.write that writes n_ok_bytes in all, then fails as a full disk does (a short write first)."""
    left = [n_ok_bytes]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = REAL_WRITE(fd, bytes(data[: left[0]]))
        left[0] -= n
        return n
    return write


ROW = {"run_id": "r", "job_id": "j", "status": "ok", "model": "m", "framework": "torch", "epoch": 1}


@pytest.mark.parametrize("cut", ["nothing", "part of the header", "header and part of the row"])
def test_a_failed_append_leaves_every_csv_as_it_was(cut, tmp_path, monkeypatch):
    header = len(",".join(columns("epochs"))) + 1
    ok_bytes = {"nothing": 0, "part of the header": 10, "header and part of the row": header + 20}[cut]
    path = tmp_path / "epochs.csv"
    monkeypatch.setattr(os, "write", _enospc_after(ok_bytes))
    with pytest.raises(ResultsWriteError, match=r"could not write .*epochs\.csv: No space left on device"):
        append_row(path, "epochs", ROW)
    assert not path.exists()  # a new file is removed: never 0 bytes, never a header without its row
    monkeypatch.undo()
    append_row(path, "epochs", ROW)
    size = path.stat().st_size
    monkeypatch.setattr(os, "write", _enospc_after(min(ok_bytes, 20)))
    with pytest.raises(ResultsWriteError):
        append_row(path, "epochs", {**ROW, "epoch": 2})
    assert path.stat().st_size == size  # truncated back: the earlier rows stand, no half row
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    monkeypatch.setattr(os, "write", _enospc_after(1 << 20))
    with pytest.raises(ResultsWriteError, match="Input/output error"):
        append_row(path, "epochs", {**ROW, "epoch": 2})
    monkeypatch.undo()
    append_row(path, "epochs", {**ROW, "epoch": 2})  # space freed: goes on
    df = pd.read_csv(path)
    assert list(df.columns) == columns("epochs") and list(df.epoch) == [1, 2]


def test_json_checkpoint_and_report_writes_keep_the_previous_file(tmp_path, monkeypatch):
    from bench.results.writes import write_json_atomic
    meta = tmp_path / "run_meta.json"
    write_json_atomic(meta, {"a": 1})
    monkeypatch.setenv("TWINBENCH_INJECT_FAULT", "enospc:run_meta.json")
    with pytest.raises(ResultsWriteError, match="run_meta.json: No space left on device"):
        write_json_atomic(meta, {"a": 2})
    assert json.loads(meta.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["run_meta.json"]

    ck = tmp_path / "model.pt"
    ck.write_bytes(b"epoch 1")

    def torch_like_save(p):  # torch.save on a full disk: RuntimeError after a partial file
        Path(p).write_bytes(b"epo")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0")
    with pytest.raises(ResultsWriteError, match="model.pt: .*failed writing file"):
        atomic_write(str(ck), torch_like_save)
    assert ck.read_bytes() == b"epoch 1" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "run_meta.json"]
    with pytest.raises(ValueError):  # a bug in the saver is not reported as a full disk
        atomic_write(ck, lambda p: (_ for _ in ()).throw(ValueError("bug")))


def test_disk_full_mid_run_stops_clearly_and_resume_finishes(tmp_path):
    """The worker's row write fails (ENOSPC), then the parent's error row too: exit 3 with one message,
    no traceback, no CSV left behind; once space is back, --resume finishes the run."""
    out = tmp_path / "results"
    p = _run(MEMORY_ARGS + ["--batch-sizes", "4"], out, TWINBENCH_INJECT_FAULT=f"oom:{MEM.format(4)};enospc:memory.csv")
    assert p.returncode == 3, p.stderr[-2000:]
    (run_dir,) = out.iterdir()
    assert "Traceback" not in p.stderr
    (msg,) = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert f"could not write {run_dir / 'memory.csv'}: No space left on device" in msg
    assert f"python -m bench.run --resume {run_dir.name} --out {out}" in msg
    assert not (run_dir / "memory.csv").exists()
    meta = json.loads((run_dir / "run_meta.json").read_text())
    assert meta["status"] == "interrupted" and "No space left on device" in meta["status_cause"]
    (log,) = (run_dir / "logs").iterdir()
    # the worker said why in one line (the traceback above it is the injected OOM's, as for any failed job)
    assert log.read_text().strip().splitlines()[-1].startswith(f"error: could not write {run_dir / 'memory.csv'}")
    r = _run(["--resume", run_dir.name], out, TWINBENCH_INJECT_FAULT=f"oom:{MEM.format(4)}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [row["status"] for row in _rows(run_dir / "memory.csv")] == ["oom"]


def test_unwritable_results_stop_before_any_job(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    p = _run(MEMORY_ARGS, afile)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"error: the results directory {afile}/" in p.stderr and f"{afile} is a file, not a directory" in p.stderr


# ---- reports ----------------------------------------------------------------------------------------------

def test_report_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    from bench.report import main
    assert main([str(tmp_path), "--out", str(tmp_path / "reports")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is not a TwinBench results directory (no run_meta.json)" in err
    assert not (tmp_path / "reports").exists()


def test_report_that_cannot_be_written_is_one_sentence(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from bench.report import main
    from bench.results.writes import write_json_atomic
    run = tmp_path / "results" / "r1"
    run.mkdir(parents=True)
    write_json_atomic(run / "run_meta.json", {"run_id": "r1", "suite": "smoke", "device": "cpu"})
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main([str(run), "--out", str(afile)]) == 3
    err = capsys.readouterr().err
    assert f"error: could not write the report into {afile / 'r1'}" in err and "--out elsewhere" in err


# ---- exit status -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault,status,summary", [
    ("crash", 1, "2 job(s) ended in error or timeout"),  # b4 crashes, b8 is then tried (and crashes)
    ("oom", 0, "1 oom, 1 skipped"),  # b4 out of memory ends the sweep: a result, not a failure
])
def test_exit_status_tells_failed_jobs_from_results(fault, status, summary, tmp_path):
    faults = f"{fault}:{MEM.format(4)};crash:{MEM.format(8)}"
    p = _run(MEMORY_ARGS + ["--batch-sizes", "4,8"], tmp_path, TWINBENCH_INJECT_FAULT=faults)
    assert p.returncode == status, p.stderr[-2000:]
    assert summary in p.stdout + p.stderr


def test_exit_status_contract_is_in_help():
    p = subprocess.run([sys.executable, "-m", "bench.run", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0
    for line in ("0    every job ended ok", "1    some job ended in error or timeout", "2    bad input",
                 "3    results could not be written", "130  interrupted"):
        assert line in p.stdout
    assert preflight.exit_status({"ok": 3, "oom": 1, "skipped": 2}) == 0
    assert preflight.exit_status({"ok": 3, "timeout": 1}) == preflight.exit_status({"error": 1}) == 1


# ---- kill -9 of the whole run, then --resume: 0 rows lost, 0 duplicates ---------------------------------

def test_kill_9_mid_suite_then_resume_loses_and_duplicates_nothing(tmp_path):
    models = ("resnet20_v1", "resnet32_v1", "resnet44_v1")
    jobs = [f"memory/{m}/torch/fp32/b4/train/default" for m in models]
    args = ["--suite", "memory", "--models", ",".join(models), "--frameworks", "torch", "--batch-sizes", "4",
            "--no-report", "--out", str(tmp_path)]
    env = {**os.environ, "TWINBENCH_INJECT_FAULT": f"oom:{jobs[0]};hang:{jobs[1]}"}
    p = subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any("injected hang" in f.read_text() for f in tmp_path.glob("*/logs/*.log")):
            time.sleep(0.1)
        (run_dir,) = tmp_path.iterdir()
        worker = _worker_pid(run_dir)
        assert [r["job_id"] for r in _rows(run_dir / "memory.csv")] == jobs[:1]  # job 1 done, job 2 running
        refused = _run(["--resume", run_dir.name], tmp_path)  # one writer per run: not while it runs
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert f"the run {run_dir.name} is being written by another process (pid {p.pid} on " in refused.stderr
        assert json.loads((run_dir / "run_meta.json").read_text())["status"] == "running"
    finally:
        p.kill()  # SIGKILL of bench.run, mid-suite
        p.wait(timeout=30)
    for _ in range(100):  # the running job dies with its run: no orphan writes a row after the resume
        if "zombie" in _proc_state(worker):
            break
        time.sleep(0.05)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived its killed run")
    r = _run(["--resume", run_dir.name], tmp_path, TWINBENCH_INJECT_FAULT=";".join(f"oom:{j}" for j in jobs))
    assert r.returncode == 0 and "2 of 3 jobs to run" in r.stderr, r.stderr[-2000:]
    assert f"note: took over the lock of {run_dir.name}: its previous writer (pid {p.pid} on " in r.stderr
    assert [row["job_id"] for row in _rows(run_dir / "memory.csv")] == jobs  # 0 lost, 0 duplicates
    assert json.loads((run_dir / "run_meta.json").read_text())["status"] == "finished"


def _worker_pid(run_dir: Path) -> int:
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench.pipeline.worker" in cmd and str(run_dir).encode() in cmd:
            return int(proc.name)
    raise AssertionError("no running worker found")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


def test_training_cut_by_a_full_disk_resumes_without_losing_or_repeating_an_epoch(cifar_dir, tmp_path, monkeypatch):
    """The epoch's row goes in, then its checkpoint hits a full disk: the resumed job trains that epoch again
    from the previous checkpoint and does not write its row twice."""
    pytest.importorskip("torch")
    from bench.measures.training import run_epochs
    from bench.results import writes
    job = Job("epochs", "resnet20_v1", "torch", None, "fp32", 16, recipe="fast", epochs=2, train_subset=32,
              test_subset=16, device="cpu")
    full = [True]
    monkeypatch.setattr(writes, "_injected", lambda path: full[0] and path.suffix == ".pt")
    with pytest.raises(ResultsWriteError, match=r"\.pt: No space left on device"):
        run_epochs(job, tmp_path, job.base_row("r"), str(cifar_dir))
    assert [r["epoch"] for r in _rows(tmp_path / "epochs.csv")] == ["1"]
    assert not list((tmp_path / "checkpoints").iterdir())  # no checkpoint, not even a temporary one
    full[0] = False  # space freed: the job runs again (as --resume does)
    run_epochs(job, tmp_path, job.base_row("r"), str(cifar_dir))
    assert [r["epoch"] for r in _rows(tmp_path / "epochs.csv")] == ["1", "2"]


def test_a_report_that_cannot_be_written_at_the_end_of_a_run_is_exit_3(tmp_path):
    pytest.importorskip("matplotlib")
    faults = f"oom:{MEM.format(4)};enospc:index.md"
    p = _run(MEMORY_ARGS[:-1] + ["--batch-sizes", "4", "--reports", str(tmp_path / "reports")], tmp_path / "results",
             TWINBENCH_INJECT_FAULT=faults)
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    assert (f"error: report not rendered (could not write {tmp_path / 'reports' / run_dir.name / 'index.md'}: No space "
            f"left on device); free space, then: python -m bench.report {run_dir}") in p.stderr
