"""Faults, round 4 (issue #43): five holes, each a table whose every case can fail.

1. one row per job, the last attempt, in every reader: a job killed mid-run and run again by ``--resume``;
2. a damaged checkpoint is set aside and training resumes from the last good one, or from the start;
3. checkpoints and epoch rows agree: a lost epoch row is written again from the checkpoint (or trained again);
4. out of memory on a CPU is a result (an ``oom`` row), as on a GPU;
5. a dry run refuses what the real run refuses, with the same sentence and exit status.

Cheap on purpose: the trainings are 2 epochs of 16 images, the runs are one or two memory jobs of resnet20_v1, the
out-of-memory a real allocator failure asked for at once (torch's DefaultCPUAllocator, 1 PiB).
"""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.core.job import Job
from bench.results.schema import FILES

ROOT = Path(__file__).resolve().parents[1]
MEM = "memory/resnet20_v1/torch/fp32/b{}/train/default"
MEMORY_ARGS = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--no-report"]


def _run(args, out, **extra):
    env = {k: v for k, v in os.environ.items() if k != "TWINBENCH_INJECT_FAULT"}
    env.update(extra)
    return subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- 1. one row per job: the last attempt, in every reader ------------------------------------------------------

@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A memory sweep (b4, b8) in one long-lived worker, killed (SIGKILL) during b4 the first time; then --resume."""
    root = tmp_path_factory.mktemp("resumed")
    faults = dict(TWINBENCH_INJECT_FAULT=f"crash-once:{MEM.format(4)}", TWINBENCH_FAULT_DIR=str(root))
    first = _run(MEMORY_ARGS + ["--batch-sizes", "4,8", "--isolation", "reused"], root / "results", **faults)
    (run_dir,) = (root / "results").iterdir()
    second = _run(["--resume", run_dir.name], root / "results", **faults)
    return run_dir, first, second


def _load(run_dir):
    from bench.report import load_run
    return load_run(run_dir)


def health(run_dir):  # the report's health line (the scoreboard's opening)
    from bench.report.sections.scoreboard import health_line
    return health_line(_load(run_dir))


def errors_section(run_dir):
    from bench.report.sections.errors import section_errors
    return " ".join(section_errors(_load(run_dir)).text)


def memory_csv(run_dir):  # what compare and history read too (load_run): the rows per job
    return sorted(_load(run_dir)["memory"].job_id)


def jobs_csv(run_dir):
    return sorted(r["job_id"] for r in _rows(run_dir / FILES["jobs"]))


def history(run_dir):
    from bench.report.history import gather
    _, _, mem = gather([run_dir.parent])
    return sorted(mem.job_id)


def summary(run_dir):
    from bench.run import summary_table
    return summary_table(run_dir)


JOBS = sorted(MEM.format(b) for b in (4, 8))
READERS = {  # reader -> what it must give after the resume (each failed before #43: 1 not ok, two rows for b4)
    health: lambda got: got.startswith("Run health: 2 jobs, 2 ok (") and "not ok" in got and "0 not ok" in got,
    errors_section: lambda got: f"{MEM.format(4)}: error, then ok on resume" in got,
    memory_csv: lambda got: got == JOBS,
    jobs_csv: lambda got: got == JOBS,
    history: lambda got: got == JOBS,
    summary: lambda got: "not ok" not in got,
}


def test_a_job_killed_then_resumed_ends_ok_and_exits_0(resumed_run):
    run_dir, first, second = resumed_run
    assert first.returncode == 1 and "worker died with exit code -9" in first.stdout + first.stderr, first.stderr[-2000:]
    assert second.returncode == 0 and "1 of 2 jobs to run" in second.stderr, second.stderr[-2000:]
    assert "moved to memory.csv.attempts" in second.stderr  # the earlier attempt, kept aside
    assert [r["status"] for r in _rows(run_dir / "memory.csv.attempts")] == ["error"]


@pytest.mark.parametrize("reader", list(READERS), ids=[r.__name__ for r in READERS])
def test_every_reader_counts_a_resumed_job_once_by_its_last_attempt(resumed_run, reader):
    run_dir = resumed_run[0]
    got = reader(run_dir)
    assert READERS[reader](got), got


# ---- 2 and 3. checkpoints and epoch rows ------------------------------------------------------------------------

JOB = Job("epochs", "resnet20_v1", "torch", None, "fp32", 16, recipe="fast", epochs=2, train_subset=16,
          test_subset=16, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_dir):
    """A finished 2-epoch training: epochs.csv rows 1 and 2, the checkpoint of epoch 2, the previous of epoch 1."""
    pytest.importorskip("torch")
    from bench.measures.training import run_epochs
    d = tmp_path_factory.mktemp("trained")
    run_epochs(JOB, d, JOB.base_row("r"), str(cifar_dir))
    return d


def _ckpt(d: Path) -> Path:
    (ck,) = (d / "checkpoints").glob("*.pt")
    return ck


def _drop_epoch_rows(d: Path, epochs: set[str]) -> None:
    """What --resume leaves of a damaged epochs.csv: its damaged rows set aside (bench.results.read.repair)."""
    path = d / FILES["epochs"]
    rows = _rows(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(r for r in rows if r["epoch"] not in epochs)


def cut_checkpoint_no_previous(d):  # issue case 2: stopped after its first checkpoint, which was then cut in half
    Path(f"{_ckpt(d)}.prev").unlink()
    raw = _ckpt(d).read_bytes()
    _ckpt(d).write_bytes(raw[: len(raw) // 2])
    _drop_epoch_rows(d, {"2"})
    return "does not load", "set aside as {name}.damaged; training starts again from the start"


def cut_checkpoint_with_previous(d):
    raw = _ckpt(d).read_bytes()
    _ckpt(d).write_bytes(raw[: len(raw) // 2])
    _drop_epoch_rows(d, {"2"})
    return "does not load", "set aside as {name}.damaged; training resumes from {name}.prev"


def checkpoint_not_a_checkpoint(d):  # overwritten by something else
    Path(f"{_ckpt(d)}.prev").unlink()
    _ckpt(d).write_text("not a checkpoint\n")
    _drop_epoch_rows(d, {"2"})
    return "does not load", "set aside as {name}.damaged; training starts again from the start"


def epoch_row_lost(d):  # issue case 3: a damaged row of a finished training set aside by --resume
    _drop_epoch_rows(d, {"1"})
    return None, None


def epoch_row_lost_checkpoint_without_rows(d):  # a checkpoint written before checkpoints held their rows
    import torch
    _drop_epoch_rows(d, {"1"})
    ck = torch.load(_ckpt(d), weights_only=False)
    del ck["rows"]
    torch.save(ck, _ckpt(d))
    return "are missing and its checkpoint does not hold them", "training runs again from the start to write them"


CHECKPOINT_DAMAGES = [cut_checkpoint_no_previous, cut_checkpoint_with_previous, checkpoint_not_a_checkpoint,
                      epoch_row_lost, epoch_row_lost_checkpoint_without_rows]


@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGES, ids=[d.__name__ for d in CHECKPOINT_DAMAGES])
def test_a_resumed_training_ends_with_every_epoch_row_once(damage, trained, tmp_path, cifar_dir, capsys):
    from bench.measures.training import run_epochs
    from bench.pipeline.jobs import done_jobs
    d = tmp_path / "run"
    shutil.copytree(trained, d)
    before = {r["epoch"]: r for r in _rows(d / FILES["epochs"])}
    name = _ckpt(d).name
    fragment, resumes = damage(d)
    assert JOB.job_id not in done_jobs(d)[0]  # an epoch row missing: the job runs again
    capsys.readouterr()
    run_epochs(JOB, d, JOB.base_row("r"), str(cifar_dir))  # what --resume runs
    err = capsys.readouterr().err
    rows = _rows(d / FILES["epochs"])
    assert sorted(r["epoch"] for r in rows) == ["1", "2"], rows  # every epoch's row, once
    assert JOB.job_id in done_jobs(d)[0]
    said = [ln for ln in err.splitlines() if ln.startswith("note:")]
    if fragment is None:  # restored from the checkpoint: the very row written the first time, no training
        assert said == [], err
        (got,) = [r for r in rows if r["epoch"] == "1"]
        assert got["epoch_s"] == before["1"]["epoch_s"] and got["test_acc"] == before["1"]["test_acc"]
    else:
        assert len(said) == 1 and fragment in said[0] and resumes.format(name=name) in said[0], err
    if "damaged" in (resumes or ""):
        assert (d / "checkpoints" / f"{name}.damaged").is_file()
    assert _ckpt(d).is_file()  # a whole checkpoint again, for the next resume


def test_a_checkpoint_keeps_the_previous_one_until_the_new_one_is_whole(tmp_path, monkeypatch):
    from bench.results import writes
    from bench.results.writes import ResultsWriteError
    from bench.stacks.common import checkpoint
    path = tmp_path / "c.pt"
    checkpoint.save(path, lambda p: Path(p).write_text("epoch 1"))
    checkpoint.save(path, lambda p: Path(p).write_text("epoch 2"))
    assert path.read_text() == "epoch 2" and checkpoint.previous(path).read_text() == "epoch 1"
    monkeypatch.setattr(writes, "_injected", lambda p: True)  # a full disk while the third is written
    with pytest.raises(ResultsWriteError):
        checkpoint.save(path, lambda p: Path(p).write_text("epoch 3"))
    assert path.read_text() == "epoch 2" and checkpoint.previous(path).read_text() == "epoch 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "c.pt.prev"]  # no temporary file left


# ---- 4. out of memory on a CPU is a result ----------------------------------------------------------------------

def _torch_cpu():
    import torch
    torch.empty(2**50, dtype=torch.uint8)


def _jax_cpu():
    jnp = pytest.importorskip("jax.numpy")
    jnp.zeros((2**50,), dtype=jnp.uint8).block_until_ready()


def _tensorflow_cpu():
    tf = pytest.importorskip("tensorflow")
    with tf.device("/CPU:0"):
        tf.zeros((2**50,), dtype=tf.uint8)


def _numpy():
    import numpy as np
    np.empty(2**50, dtype=np.uint8)


def _not_oom_shape():
    raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x10 and 12x10)")


def _not_oom_value():
    raise ValueError("checkpoint holds 3 weights that do not match")


ALLOCATIONS = {_torch_cpu: True, _jax_cpu: True, _tensorflow_cpu: True, _numpy: True, _not_oom_shape: False,
               _not_oom_value: False}


@pytest.mark.parametrize("alloc", list(ALLOCATIONS), ids=[a.__name__.strip("_") for a in ALLOCATIONS])
def test_a_real_allocator_failure_is_out_of_memory_on_every_stack(alloc):
    from bench.stacks.base import is_oom
    with pytest.raises(Exception) as e:  # noqa: PT011  (each stack raises its own type)
        alloc()
    assert is_oom(e.value) is ALLOCATIONS[alloc], f"{type(e.value).__name__}: {str(e.value)[:300]}"


def test_a_cpu_out_of_memory_in_a_memory_sweep_is_a_result(tmp_path):
    """Issue case 4: torch's DefaultCPUAllocator fails at the first batch; the sweep ends with an oom row (not an
    error row with oom=true), the larger batch skipped, exit 0, and the sweep's answer said."""
    p = _run(MEMORY_ARGS + ["--batch-sizes", "4,8", "--device", "cpu"], tmp_path,
             TWINBENCH_INJECT_FAULT=f"cpu-oom:{MEM.format(4)}")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    rows = {r["job_id"]: r for r in _rows(run_dir / "memory.csv")}
    assert rows[MEM.format(4)]["status"] == "oom" and rows[MEM.format(4)]["oom"] == "true"
    assert "DefaultCPUAllocator: can't allocate memory" in rows[MEM.format(4)]["error"]
    assert rows[MEM.format(8)]["status"] == "skipped"
    assert "no batch fit (the smallest tried, 4, out of memory)" in p.stdout
    assert "not ok" not in p.stdout


SWEEPS = {  # (status per batch) -> the sentence
    (("ok", 4), ("ok", 8), ("oom", 16), ("skipped", 32)): "largest batch that fit 8 (16 out of memory)",
    (("oom", 4), ("skipped", 8)): "no batch fit (the smallest tried, 4, out of memory)",
    (("ok", 4), ("ok", 8)): None,
}


@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_a_memory_sweep_says_the_largest_batch_that_fit(sweep):
    from bench.measures.memory import largest_fit
    df = pd.DataFrame([{"model": "m", "framework": "torch", "backend": "torch", "exec_mode": "eager",
                        "precision": "fp32", "measurement": "train", "depth": None, "status": s, "batch_size": b}
                       for s, b in sweep])
    got = largest_fit(df)
    assert got == ([] if SWEEPS[sweep] is None else [f"m torch eager fp32 train: {SWEEPS[sweep]}"])


# ---- 5. a dry run refuses what the real run refuses -------------------------------------------------------------

def too_many_replicas(tmp_path, monkeypatch):  # issue case 5
    return ["--suite", "scaling", "--replicas", "64", "--device", "cpu"], "64 replicas asked for, but this machine has"


def unwritable_results(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("")
    return MEMORY_ARGS + ["--batch-sizes", "4", "--out", str(tmp_path / "afile" / "x")], "is a file, not a directory"


def no_room_on_disk(tmp_path, monkeypatch):
    import shutil as sh
    usage = sh.disk_usage(tmp_path)
    monkeypatch.setattr(sh, "disk_usage", lambda p: usage._replace(free=1024))
    return MEMORY_ARGS + ["--batch-sizes", "4"], "MiB free on its disk and this run needs about"


def damaged_data(tmp_path, monkeypatch, cifar_dir):
    d = tmp_path / "data" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for f in (cifar_dir / "cifar-10-batches-py").iterdir():
        (d / f.name).symlink_to(f)
    raw = (d / "data_batch_3").read_bytes()
    (d / "data_batch_3").unlink()
    (d / "data_batch_3").write_bytes(raw[:-1024])
    return (["--suite", "train", "--models", "resnet20_v1", "--frameworks", "torch", "--recipe", "smoke",
             "--data-dir", str(d.parent), "--no-report"], "data_batch_3 is truncated or corrupt")


REFUSALS = [too_many_replicas, unwritable_results, no_room_on_disk, damaged_data]


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.__name__ for r in REFUSALS])
def test_a_dry_run_refuses_what_the_real_run_refuses(refusal, tmp_path, monkeypatch, capsys, request):
    from bench.run import main
    extra = (request.getfixturevalue("cifar_dir"),) if refusal is damaged_data else ()
    argv, sentence = refusal(tmp_path, monkeypatch, *extra)
    argv = argv if "--out" in argv else argv + ["--out", str(tmp_path / "results")]
    said = {}
    for mode in ("dry", "real"):
        capsys.readouterr()
        code = main(argv + (["--dry-run"] if mode == "dry" else []))
        err = capsys.readouterr().err
        said[mode] = (code, [ln for ln in err.splitlines() if ln.startswith("error:")])
    assert said["dry"] == said["real"], said
    code, errors = said["real"]
    assert code == 2 and len(errors) == 1 and sentence in errors[0], said
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())  # nothing ran


def test_each_depth_of_a_depth_sweep_is_its_own_sweep():
    from bench.measures.memory import largest_fit
    df = pd.DataFrame([{"model": "m", "framework": "torch", "backend": "torch", "exec_mode": "eager",
                        "precision": "fp32", "measurement": "train", "depth": d, "status": s, "batch_size": 8}
                       for d, s in ((28, "ok"), (100, "oom"))])
    assert largest_fit(df) == ["m torch eager fp32 train depth 100: no batch fit (the smallest tried, 8, out of memory)"]


@pytest.mark.parametrize("teardown", ["", "1"])
def test_a_worker_ends_without_teardown_yet_flushes_its_output(tmp_path, teardown):
    """A fresh job's process ends at once after its rows (``worker.exit_now``): its buffered output still reaches the
    log, its exit status is kept, and no finaliser runs, unless TWINBENCH_WORKER_TEARDOWN=1 asks for the normal exit."""
    root = Path(__file__).resolve().parents[1]
    code = ("import atexit, sys\nfrom bench.pipeline import worker\natexit.register(lambda: print('finaliser ran'))\n"
            "print('the last line of the job')\nworker.exit_now(5)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "TWINBENCH_WORKER_TEARDOWN")}
    env.update(PYTHONPATH=str(root), TWINBENCH_WORKER_TEARDOWN=teardown)
    log = tmp_path / "job.log"
    with open(log, "w") as f:  # a file: stdout is block-buffered, as in a job's log
        rc = subprocess.run([sys.executable, "-c", code], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=root).returncode
    text = log.read_text()
    assert rc == 5 and "the last line of the job" in text
    assert ("finaliser ran" in text) == (teardown == "1"), text
