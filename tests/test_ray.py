"""``bench.run --executor ray`` on a local Ray instance (2 cores in CI): the smoke suite, faults, Ctrl-C + resume.

The driver starts the instance itself (``ray.init(num_cpus=<cores>, include_dashboard=False)``), so each
run here pays Ray's start-up (a few seconds). The smoke suite, ResNet-20's PyTorch twin alone and one epoch (every
kind of job; the whole suite took 6 minutes in CI, and the rest of it is nothing Ray-specific: a Keras job is the
same task to Ray, with another worker command, run locally in tests/test_backends.py), runs through Ray once,
with a worker killed once (retried, then ok) and one that always dies (retried, then an error row) folded into it.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.results.schema import columns

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
KILLED_ONCE = "throughput/resnet20_v1/torch/fp32/b8/infer/default/synthetic"
ALWAYS_DIES = "memory/resnet20_v1/torch/fp32/b8/train/default"


def _run(args, out, **env):
    return subprocess.run([sys.executable, "-m", "bench.run", *args, "--out", str(out)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)


def _rows(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _no_worker_left(run_dir):
    """No bench.pipeline.worker of this run is still running (a cancelled task must take its child with it)."""
    cmdlines = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdlines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # gone meanwhile
    return not [a for a in cmdlines if "bench.pipeline.worker" in a and run_dir.name in a]


def _epochs_of(job) -> int:
    """Epochs a training job runs: its own override, else its recipe's."""
    from bench.zoo import get_spec
    from bench.zoo.recipes import recipe_for
    return job.epochs or recipe_for(job.recipe, get_spec(job.model).family).epochs


@pytest.fixture(scope="module")
def ray_smoke(tmp_path_factory, cifar_dir):
    out = tmp_path_factory.mktemp("ray-results")
    faults = tmp_path_factory.mktemp("faults")
    p = _run(["--suite", "smoke", "--models", "resnet20_v1", "--frameworks", "torch", "--epochs", "1", "--executor", "ray",
              "--ray-jobs-per-device", "2", "--no-report", "--data-dir", str(cifar_dir)], out,
             TWINBENCH_INJECT_FAULT=f"crash-once:{KILLED_ONCE};crash:{ALWAYS_DIES}", TWINBENCH_FAULT_DIR=str(faults))
    # one job always dies: an error row, so the run's exit status is 1 (bench.pipeline.preflight's contract)
    assert p.returncode == 1 and "exit status 1: 1 job(s) ended in error" in p.stderr, p.stderr[-3000:]
    (run_dir,) = out.iterdir()
    return run_dir, p, faults


@pytest.mark.slow
def test_smoke_through_ray_has_the_plans_jobs_and_rows(ray_smoke):
    """Every job of the plan a local run would follow has its rows, in the same CSVs, and nothing else."""
    from bench.pipeline.suites import expand
    from bench.run import options_from, parse_args
    run_dir, p, _ = ray_smoke
    meta = json.loads((run_dir / "run_meta.json").read_text())
    plan = expand("smoke", options_from(parse_args(meta["argv"]), gpu=False))
    assert meta["gpu"] is False and len(plan) >= 5
    for kind in ("throughput", "memory", "epochs"):
        with open(run_dir / f"{kind}.csv", newline="") as f:
            assert next(csv.reader(f)) == columns(kind)
        rows = _rows(run_dir / f"{kind}.csv")
        jobs = [j for j in plan if j.kind == kind]
        per_job = {j.job_id: _epochs_of(j) if kind == "epochs" else 1 for j in jobs}  # one row per epoch trained
        assert sorted(r["job_id"] for r in rows) == sorted(i for i, n in per_job.items() for _ in range(n)), kind
        assert {r["run_id"] for r in rows} == {run_dir.name}
    assert f"{len(plan)} of {len(plan)} jobs to run" in p.stderr
    nodes = meta["ray"]["nodes"]
    assert len(nodes) == 1 and nodes[0]["jobs"] == len(plan) and nodes[0]["hostname"] and nodes[0]["node_id"]
    assert len(list((run_dir / "logs").glob("*.log"))) == len(plan)
    assert list((run_dir / "checkpoints").glob("*.pt"))  # the torch training's checkpoint came back
    traces = [r["trace_path"] for r in _rows(run_dir / "profile.csv") if r["trace_path"]]
    assert traces and all((run_dir / t).is_file() for t in traces)  # the profile job's trace came back too


def test_a_killed_worker_is_retried_then_recorded(ray_smoke):
    run_dir, p, faults = ray_smoke
    assert list(faults.iterdir())  # the crash-once fault did fire
    (killed,) = [r for r in _rows(run_dir / "throughput.csv") if r["job_id"] == KILLED_ONCE]
    assert killed["status"] == "ok" and float(killed["images_per_s"]) > 0  # the retry ran it
    (dead,) = [r for r in _rows(run_dir / "memory.csv") if r["job_id"] == ALWAYS_DIES]
    assert dead["status"] == "error" and "exit code 3" in dead["error"] and "tried 2 times on Ray" in dead["error"]
    assert dead["peak_alloc_mib"] == "" and "not ok" in p.stdout  # the suite went on and says so


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_resume_reruns_only_unfinished_jobs(tmp_path):
    """SIGINT to a Ray run: outstanding tasks cancelled (their workers gone), finished rows kept; --resume
    with the other executor runs only the rest."""
    args = ["--suite", "memory", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4,8",
            "--no-report", "--executor", "ray", "--out", str(tmp_path)]  # two short jobs, one sweep
    proc = subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not _rows(next(iter(tmp_path.glob("*/memory.csv")), tmp_path / "none")):
        time.sleep(0.2)  # interrupt once the driver has kept the first job's row (the second is running)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "interrupted" in err and "--resume" in err
    (run_dir,) = tmp_path.iterdir()
    kept = _rows(run_dir / "memory.csv")
    assert len(kept) == 1 and kept[0]["status"] == "ok" and kept[0]["batch_size"] == "4"
    assert _no_worker_left(run_dir)
    r = _run(["--resume", run_dir.name, "--no-report", "--executor", "local"], tmp_path)
    assert r.returncode == 0 and "1 of 2 jobs to run" in r.stderr, r.stderr[-2000:]
    rows = _rows(run_dir / "memory.csv")
    assert [r["batch_size"] for r in rows] == ["4", "8"] and {r["status"] for r in rows} == {"ok"}


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from bench.run import main
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc = main(["--suite", "smoke", "--executor", "ray", "--dry-run", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and 'pip install -e ".[ray]"' in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--ray-retries", "-1"], "--ray-retries must be >= 0"),
    (["--ray-jobs-per-device", "0"], "--ray-jobs-per-device must be >= 1"),
])
def test_bad_ray_options_are_clear_errors(args, message, capsys, tmp_path):
    from bench.run import main
    with pytest.raises(SystemExit) as e:  # refused with the other flags, before Ray is imported
        main(["--suite", "smoke", "--executor", "ray", "--dry-run", "--out", str(tmp_path), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_ray_options_without_the_ray_executor_are_refused(capsys, tmp_path):
    from bench.run import main
    assert main(["--suite", "smoke", "--ray-address", "auto", "--dry-run", "--out", str(tmp_path)]) == 2
    assert "only apply to --executor ray" in capsys.readouterr().err


def test_resources_one_gpu_per_job_whole_cpu_node_memory_never_shared():
    from bench.core.job import Job
    from bench.pipeline.executors import RayExecutor
    ex = RayExecutor.__new__(RayExecutor)
    ex.jobs_per_device = 2
    ex._alive = lambda: [{"Resources": {"CPU": 8.0}}, {"Resources": {"CPU": 16.0, "GPU": 2.0}}]
    tp = Job("throughput", "resnet20_v1", "torch", None, "fp32", 8)
    mem = Job("memory", "resnet20_v1", "torch", None, "fp32", 8)
    assert ex.resources(mem) == {"num_gpus": 1, "num_cpus": 1}
    assert ex.resources(tp) == {"num_gpus": 0.5, "num_cpus": 1}
    cpu = dict(device="cpu")
    assert ex.resources(Job("memory", "resnet20_v1", "torch", None, "fp32", 8, **cpu)) == {"num_gpus": 0, "num_cpus": 16}
    assert ex.resources(Job("throughput", "resnet20_v1", "torch", None, "fp32", 8, **cpu)) == {"num_gpus": 0, "num_cpus": 8}
    # a data-parallel job: all its R GPUs in one task (one node), never a share of a device
    dp = Job("scaling", "resnet20_v1", "torch", None, "fp32", 8, replicas=4)
    assert ex.resources(dp) == {"num_gpus": 4, "num_cpus": 4}


# ---- a real Ray head (``ray start --head``), joined with --ray-address auto ---------------------------------

@pytest.fixture
def ray_head():
    """A real Ray head on this machine, isolated from any other: its own temporary folder (so that ``auto`` finds
    this head and no other session's), its own HOME (no CIFAR-10 cache, no token), no reachable download (a dead
    proxy). ``ray start --block`` stops everything it started when terminated, in the finally."""
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="tbray", dir="/tmp"))  # short: Ray's socket paths live under it
    (base / "home").mkdir()
    (base / "tmp").mkdir()
    dead = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if k not in ("TWINBENCH_DATA_DIR", "RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HOME=str(base / "home"), TMPDIR=str(base / "tmp"), http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead,
               HTTPS_PROXY=dead)
    log = base / "ray.log"
    with open(log, "w") as f:
        head = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--port=0",
                                 "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard", "false",
                                 "--block"], env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.time() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield env, base
    finally:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_a_ray_node_without_data_stops_the_run_before_any_job(ray_head, cifar_dir):
    env, base = ray_head
    args = ["--suite", "throughput", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4",
            "--executor", "ray", "--ray-address", "auto", "--no-report", "--out", str(base / "results")]
    p = subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    (error,) = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    import socket
    assert f"error: Ray node {socket.gethostname()} (" in error and ") cannot serve the jobs that read CIFAR-10" in error
    assert f"CIFAR-10 not found in {base / 'home' / '.cache' / 'twinbench'}" in error  # the node's persistent cache
    assert "--data-dir a folder on shared storage" in error
    assert not (base / "results").exists()  # no job ran, no run folder
    # with data the nodes can read: every row ok
    p = subprocess.run([sys.executable, "-m", "bench.run", *args, "--data-dir", str(cifar_dir)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    (run_dir,) = (base / "results").iterdir()
    rows = _rows(run_dir / "throughput.csv")
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"} and {r["input"] for r in rows} == {"synthetic", "real"}
    meta = json.loads((run_dir / "run_meta.json").read_text())
    assert meta["status"] == "finished" and meta["ray"]["nodes"][0]["data"].startswith(str(cifar_dir))
