"""One writer per run, and a run that records how it ended (issue #23).

Cheap: jobs are memory jobs with an injected OOM (``TWINBENCH_INJECT_FAULT``), so no framework is imported.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.data import DataError
from bench.results.run_state import LOCK_NAME, RunLock, RunLocked, holder, new_run_dir, set_status, state_sentence

ROOT = Path(__file__).resolve().parents[1]
MEM = "memory/resnet20_v1/torch/fp32/b4/train/default"
MEM1 = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4", "--no-report"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TWINBENCH_INJECT_FAULT"}
    return {**env, **extra}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _meta(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_meta.json").read_text())


def test_runs_claimed_in_the_same_second_get_distinct_folders(tmp_path):
    ids = [new_run_dir(tmp_path, "20261202-101500-smoke")[0] for _ in range(3)]
    assert ids == ["20261202-101500-smoke", "20261202-101500-smoke-2", "20261202-101500-smoke-3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ids)


def test_lock_refuses_a_second_writer_and_takes_over_a_dead_ones(tmp_path):
    first = RunLock(tmp_path)
    assert first.acquire(["--suite", "smoke"]) is None
    h = holder(tmp_path)
    assert h["pid"] == os.getpid() and h["argv"] == ["--suite", "smoke"]
    with pytest.raises(RunLocked, match=rf"being written by another process \(pid {os.getpid()} on "):
        RunLock(tmp_path).acquire()
    first.release()
    assert holder(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()  # a clean end leaves no lock file
    # a writer killed with -9: its flock is gone, its pid/host are left in the file
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "gone", "since": "then"}))
    assert holder(tmp_path) is None
    with RunLock(tmp_path) as second:
        note = second.acquire()
        assert "took over the lock" in note and "pid 999999 on gone" in note
        assert holder(tmp_path)["pid"] == os.getpid()


def test_two_runs_started_together_are_two_complete_runs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "bench.run", *MEM1, "--out", str(tmp_path)], cwd=ROOT,
                              env=_env(TWINBENCH_INJECT_FAULT=f"oom:{MEM}"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    runs = sorted(tmp_path.iterdir())
    assert len(runs) == 2, runs
    for run_dir in runs:
        rows = _rows(run_dir / "memory.csv")
        assert [(r["run_id"], r["job_id"], r["status"]) for r in rows] == [(run_dir.name, MEM, "oom")]
        assert _meta(run_dir)["run_id"] == run_dir.name and _meta(run_dir)["status"] == "finished"
        assert not (run_dir / LOCK_NAME).exists()


def test_a_resume_keeps_the_original_command_and_can_be_resumed_again(tmp_path):
    env = _env(TWINBENCH_INJECT_FAULT=f"oom:{MEM}")
    p = subprocess.run([sys.executable, "-m", "bench.run", *MEM1, "--out", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    argv = _meta(run_dir)["argv"]
    for _ in range(2):
        r = subprocess.run([sys.executable, "-m", "bench.run", "--resume", run_dir.name, "--out", str(tmp_path)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "0 of 1 jobs to run" in r.stderr, r.stderr[-2000:]
        meta = _meta(run_dir)
        assert meta["argv"] == argv and meta["status"] == "finished" and meta.get("resumed_at")
    assert len(_rows(run_dir / "memory.csv")) == 1


def test_run_meta_status_and_the_report_banner(tmp_path):
    run = tmp_path / "r1"
    run.mkdir()
    (run / "run_meta.json").write_text(json.dumps({"run_id": "r1", "status": "running"}))
    assert "stopped without recording how it ended" in state_sentence(run, _meta(run))  # no live writer
    with RunLock(run) as lock:
        lock.acquire()
        assert "is still being written (pid" in state_sentence(run, _meta(run))
    assert set_status(run, "interrupted", "SIGTERM")
    meta = _meta(run)
    assert meta["status"] == "interrupted" and meta["status_cause"] == "SIGTERM" and meta["status_at"]
    assert state_sentence(run, meta).startswith("Run r1 was interrupted (SIGTERM) at ")
    assert set_status(run, "finished") and state_sentence(run, _meta(run)) is None
    assert state_sentence(run, {"run_id": "old"}) is None  # runs from before the status field: nothing said


def test_report_of_an_unfinished_run_says_so_at_the_top(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from bench.report import main
    run = tmp_path / "results" / "r1"
    run.mkdir(parents=True)
    (run / "run_meta.json").write_text(json.dumps({"run_id": "r1", "suite": "smoke", "device": "cpu",
                                                   "status": "running"}))
    with RunLock(run) as lock:
        lock.acquire()
        assert main([str(run), "--out", str(tmp_path / "reports")]) == 0
    assert "r1 is still being written" in capsys.readouterr().err
    md = (tmp_path / "reports" / "r1" / "index.md").read_text().splitlines()
    assert md[2].startswith("> **Not a finished run.** Run r1 is still being written (pid")
    assert "Not a finished run." in (tmp_path / "reports" / "r1" / "index.html").read_text()


# ---- a Ray node's CIFAR-10: a persistent per-node cache, never ./data ------------------------------------------

def test_a_node_downloads_into_its_persistent_cache_not_the_working_copy(tmp_path, monkeypatch):
    import bench.data as data
    monkeypatch.chdir(tmp_path)  # with --ray-address, the task's working directory is Ray's copy of the code
    monkeypatch.delenv("TWINBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr(data.Path, "home", classmethod(lambda cls: tmp_path / "home"))
    monkeypatch.setattr(data, "CACHE", tmp_path / "home" / ".cache" / "twinbench")
    targets = []

    def no_network(target, *a, **k):
        targets.append(target)
        raise DataError(f"download into {target} failed")
    monkeypatch.setattr(data, "download_cifar10", no_network)
    monkeypatch.setattr(data, "STANDIN_BUILD", tmp_path / "absent.py")
    with pytest.raises(DataError, match="download into .*/home/.cache/twinbench failed"):
        data.prepare_cifar10(None)
    assert targets == [tmp_path / "home" / ".cache" / "twinbench"] and not (tmp_path / "data").exists()
    with pytest.raises(DataError):  # --data-dir, when given, is where it goes
        data.prepare_cifar10(str(tmp_path / "shared"))
    assert targets[-1] == tmp_path / "shared"


def test_node_problems_name_the_node_and_the_fix():
    from bench.pipeline.executors import node_problems
    assert node_problems({"hostname": "n1", "ip": "10.0.0.1"}) == []
    pkg, data = node_problems({"hostname": "n1", "ip": "10.0.0.1", "missing": ["torch"],
                               "data_error": "CIFAR-10 not found in /root/.cache/twinbench."})
    assert pkg.startswith("Ray node n1 (10.0.0.1) lacks the package(s) torch") and "install them" in pkg
    assert data.startswith("Ray node n1 (10.0.0.1) cannot serve the jobs that read CIFAR-10: CIFAR-10 not found in")
    assert "--data-dir a folder on shared storage" in data and "~/.cache/twinbench" in data


def test_a_run_that_crashes_is_recorded_as_failed_and_its_lock_released(tmp_path, monkeypatch):
    import bench.run as run
    from bench.pipeline.executors import LocalExecutor

    def broken(self, todo, ctx, on_start):
        raise RuntimeError("a bug in the job loop")
        yield
    monkeypatch.setattr(LocalExecutor, "run", broken)
    monkeypatch.setattr(run, "_stop_on_signals", lambda: None)  # leave pytest's own signal handlers alone
    with pytest.raises(RuntimeError, match="a bug in the job loop"):
        run.main([*MEM1, "--out", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    meta = _meta(run_dir)
    assert meta["status"] == "failed" and meta["status_cause"] == "RuntimeError: a bug in the job loop"
    assert holder(run_dir) is None and not (run_dir / LOCK_NAME).exists()
