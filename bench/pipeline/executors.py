"""Where a suite's jobs run: ``local`` (one child process after another, as always) or ``ray`` (a cluster).

``bench.run`` expands a suite into jobs and hands the ones still to do to an executor, which yields
``(job, status)`` as jobs finish. Both executors run the same ``python -m bench.pipeline.worker`` child
process through ``bench.pipeline.jobs.run_job``; only where differs.

- ``local``: the jobs one after another on this machine, rows appended by the worker itself.
- ``ray``: each job is a Ray task asking for what it needs (one GPU for a GPU job; on a CPU node, all the
  node's cores, so a timed job never shares them; ``--ray-jobs-per-device K`` lets K throughput jobs
  share one device, memory jobs never share). The task runs the worker on its node into a temporary
  folder and sends the rows, the log, any checkpoint and any profile trace back; the driver alone appends them to
  ``results/<run_id>/`` with ``bench.results.schema.append_row``, so the CSVs, ``--resume`` and the reports are
  the same whichever executor ran a job. A worker that dies without a row (killed, segfault) or a Ray
  worker or node lost is retried ``--ray-retries`` times (default 1), then recorded as an error row.
  Memory sweeps stay in order (a batch after an OOM is skipped, not tried). CIFAR-10 is made ready once
  per node before the jobs (``bench.data.load_cifar10``: cache, download or the stand-in). Ctrl-C cancels
  the outstanding tasks; finished rows are kept and ``--resume`` (with either executor) goes on.
  ``run_meta.json`` gets a ``ray`` entry listing the nodes that took part.

Checkpoints of training jobs travel with the task: the driver's checkpoint of a job (e.g. from an
interrupted local run) is sent to the node, which resumes from it, and the node's checkpoint comes back
when the task ends (done, or failed after its retries). A Ray training interrupted by Ctrl-C loses its
running task, rows and checkpoint alike, and restarts from epoch 1 on resume.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.core.job import Job
from bench.results.schema import FILES, KINDS, append_row

ROOT = Path(__file__).resolve().parents[2]
EXECUTORS = ("local", "ray")
INSTALL_HINT = 'pip install -e ".[ray]"'
DEFAULTS = {"executor": "local", "ray_address": None, "ray_retries": 1, "ray_jobs_per_device": 1, "isolation": None}
ISOLATIONS = ("fresh", "reused")
# The default isolation per device, until the A/A (scripts/isolation_aa.sh) has measured it: reused on a CPU (expected
# to give the same figures: the same step, the same warm-up until stable, the allocator thresholds fixed per process),
# fresh on a GPU (a CUDA context and caching allocator that persist can change a step: not measured yet).
DEFAULT_ISOLATION = {"cpu": "reused", "cuda": "fresh"}
# not sent to a remote cluster with the code (runtime_env working_dir)
UPLOAD_EXCLUDES = [".git", "results", "reports", "data", "**/__pycache__", ".pytest_cache", "*.pt", "*.npz"]


class ExecutorError(Exception):
    """The executor cannot start (Ray missing, no cluster at the address, bad option); the message says why."""


@dataclass(frozen=True)
class RunContext:
    """What every job of a run shares: where rows go, the run id, the data and the timeout asked for."""

    out: Path
    run_id: str
    data_dir: str | None
    job_timeout: float | None
    isolation: str = "fresh"  # fresh | reused (bench.pipeline.pool; the local executor alone)


def add_args(ap: argparse.ArgumentParser) -> None:
    """The executor options of ``bench.run`` (default None: on ``--resume`` a given one wins over the run's own)."""
    g = ap.add_argument_group("where jobs run")
    g.add_argument("--executor", choices=EXECUTORS, default=None,
                   help="local (default): one job after another here; ray: every job a task on a Ray cluster")
    g.add_argument("--isolation", choices=ISOLATIONS, default=None,
                   help="fresh: every job in a process of its own; reused: the throughput jobs of one stack "
                        "(framework, backend, device) share a long-lived worker (imports and data paid once; its first "
                        "job is the cold start); memory, training and profile jobs stay fresh (default: reused on a "
                        "CPU, fresh on a GPU; --executor local only)")
    g.add_argument("--ray-address", metavar="auto|HOST:PORT", default=None,
                   help="Ray cluster to join (auto, HOST:6379, ray://HOST:10001); default: a local Ray instance")
    g.add_argument("--ray-retries", type=int, default=None, metavar="N",
                   help="times a job whose worker died (killed, node lost) is run again before its error row (default 1)")
    g.add_argument("--ray-jobs-per-device", type=int, default=None, metavar="K",
                   help="throughput jobs that may share one GPU (or one CPU node) at a time (default 1; memory jobs never share)")


def option(args: argparse.Namespace, name: str):
    """An executor option's value, its default when not given."""
    v = getattr(args, name, None)
    return DEFAULTS[name] if v is None else v


def isolation(args: argparse.Namespace, gpu: bool | None = None) -> str:
    """``--isolation``, else the device's default (``DEFAULT_ISOLATION``); fresh on Ray (every job its own task)."""
    if option(args, "executor") == "ray":
        return "fresh"
    given = getattr(args, "isolation", None)
    if given:
        return given
    dev = getattr(args, "device", "auto")
    return DEFAULT_ISOLATION["cuda" if (gpu if gpu is not None else dev == "cuda") else "cpu"]


def carry_over(given: argparse.Namespace, resumed: argparse.Namespace) -> None:
    """On ``--resume``: executor options given on this command line replace the original run's (all of
    them when it names an executor: ``--executor local`` drops the run's ``--ray-*``)."""
    names_one = getattr(given, "executor", None) is not None
    for name in DEFAULTS:
        if names_one or getattr(given, name, None) is not None:
            setattr(resumed, name, getattr(given, name, None))


# auto, HOST:PORT, ray://HOST:PORT (HOST: a name, IPv4, or [IPv6])
ADDRESS = re.compile(r"^(auto|(ray://)?([A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):\d{1,5})$")


def check_options(args: argparse.Namespace) -> str | None:
    """The sentence saying what is wrong with an executor option's value, or None (checked before anything runs)."""
    retries, per_device, address = (getattr(args, n, None) for n in ("ray_retries", "ray_jobs_per_device", "ray_address"))
    if retries is not None and retries < 0:
        return f"--ray-retries must be >= 0, got {retries}"
    if per_device is not None and per_device < 1:
        return f"--ray-jobs-per-device must be >= 1, got {per_device}"
    if address is not None and not ADDRESS.match(address):
        return (f"--ray-address takes auto, HOST:PORT or ray://HOST:PORT (e.g. 10.0.0.5:6379), got {address!r}; "
                "leave it out for a local Ray instance")
    return None


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor ``args`` ask for, started (Ray connects here).

    Raises:
        ExecutorError: Ray not installed, no cluster at ``--ray-address``, or a bad option value.
    """
    name = option(args, "executor")
    ray_opts = [f"--{n.replace('_', '-')}" for n in DEFAULTS if n.startswith("ray_") and getattr(args, n, None) is not None]
    if name == "local":
        if ray_opts:
            raise ExecutorError(f"{', '.join(ray_opts)} only apply to --executor ray")
        return LocalExecutor(getattr(args, "isolation", None))
    if getattr(args, "isolation", None) == "reused":
        raise ExecutorError("--isolation reused only applies to --executor local (on Ray every job is a task of its own)")
    problem = check_options(args)
    if problem:
        raise ExecutorError(problem)
    return RayExecutor(option(args, "ray_address"), option(args, "ray_retries"), option(args, "ray_jobs_per_device"))


def job_timeout(job: Job, ctx: RunContext) -> float | None:
    """``--job-timeout``, else 1800 s; training jobs have none unless asked."""
    return ctx.job_timeout or (None if job.kind == "epochs" else 1800.0)


def record_skipped(job: Job, ctx: RunContext) -> str:
    """A memory-sweep batch not tried because a smaller one was out of memory: its row, status ``skipped``."""
    append_row(ctx.out / FILES["memory"], "memory", {
        **job.base_row(ctx.run_id), "status": "skipped", "oom": None,
        "null_reason": "not tried: a smaller batch of this sweep was already out of memory"})
    return "skipped"


def _oom_swept(job: Job, ctx: RunContext) -> bool:
    """A memory job larger than a batch of its sweep that was out of memory (a smaller one still runs: a sweep
    listed out of order, a --find-max-batch bisection)."""
    from bench.pipeline.jobs import done_jobs, sweep_tag
    smallest_oom = done_jobs(ctx.out)[1].get(sweep_tag(job.job_id)) if job.kind == "memory" else None
    return smallest_oom is not None and job.batch_size > smallest_oom


class Executor:
    """Runs a run's jobs; ``run`` yields ``(job, status)`` as each finishes (status as in the CSVs)."""

    name = "executor"
    runs_here = True  # the jobs run on this machine: the precondition pass checks its packages and data

    def gpu_available(self) -> bool:
        """Whether the machines that would run the jobs have a GPU (decides ``--device auto``)."""
        raise NotImplementedError

    def run(self, todo: list[Job], ctx: RunContext, on_start: Callable[[Job], None]) -> Iterator[tuple[Job, str]]:
        raise NotImplementedError

    def check_nodes(self, todo: list[Job], data_dir: str | None) -> list[str]:
        """The precondition pass on the machines that run the jobs, when they are not this one (Ray's nodes):
        one sentence per problem (empty: go). Here: nothing more than ``bench.pipeline.preflight`` checked."""
        return []


class LocalExecutor(Executor):
    """Today's behaviour: one child process after another on this machine, rows written by the worker."""

    name = "local"

    def __init__(self, isolation: str | None = None) -> None:
        self.isolation = isolation

    def gpu_available(self) -> bool:
        from bench.core.env import gpu_available
        return gpu_available()

    def run(self, todo: list[Job], ctx: RunContext, on_start: Callable[[Job], None]) -> Iterator[tuple[Job, str]]:
        """Every job in a fresh process; with ``ctx.isolation`` reused, the throughput jobs of one stack in one
        long-lived worker (``bench.pipeline.pool``), run together."""
        from bench.pipeline.jobs import run_job
        from bench.pipeline.pool import REUSABLE, WorkerPool, reused_order
        reused = ctx.isolation == "reused"
        pool = WorkerPool(ctx.out, ctx.run_id, ctx.data_dir) if reused else None
        try:
            for job in reused_order(todo) if reused else todo:
                on_start(job)
                if _oom_swept(job, ctx):
                    status = record_skipped(job, ctx)
                elif pool is not None and job.kind in REUSABLE:
                    status, _msg = pool.run_job(job, job_timeout(job, ctx))
                else:
                    if pool is not None:
                        pool.close()  # a fresh job never shares the machine with an idle worker
                    status, _msg = run_job(job, ctx.out, ctx.run_id, ctx.data_dir, job_timeout(job, ctx))
                yield job, status
        finally:
            if pool is not None:
                pool.close()


# ---------------------------------------------------------------------------------------------- Ray


class WorkerDied(RuntimeError):
    """Raised in a Ray task whose worker died without a row, so that Ray runs the task again.

    Carries what the attempt left (rows, log, checkpoints, node) for the driver to keep after the last try.
    """

    def __init__(self, msg: str, result: dict) -> None:
        super().__init__(msg)
        self.msg, self.result = msg, result

    def __reduce__(self):
        return (WorkerDied, (self.msg, self.result))


def _ckpt_token(job: Job) -> str:
    return job.job_id.replace("/", "_")  # the checkpoint file of a job has this in its name (bench.measures.training.checkpoint_path)


def node_info() -> dict:
    """This node as run_meta.json lists it: Ray node id, host name, cores, GPU."""
    import ray

    from bench.core.env import nvml_info
    info = {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "cpu_count": os.cpu_count()}
    gpu = nvml_info()
    info.update(gpu_name=gpu.get("gpu_name"), gpu_count=gpu.get("gpu_count", 0))
    return info


NODE_PREP = """import importlib.util, sys
missing = [p for p in sys.argv[2].split(",") if p and importlib.util.find_spec(p) is None]
if missing:
    print("missing:" + ",".join(missing))
if sys.argv[3] == "1":
    from bench.data import DataError, prepare_cifar10
    try:
        print("data:" + str(prepare_cifar10(sys.argv[1] or None)))
    except (DataError, OSError) as e:
        print("data_error:" + " ".join(str(e).split()))
"""


def prepare_node(data_dir: str | None, need_data: bool, packages: tuple[str, ...] = ()) -> dict:
    """Ray task, once per node in the precondition pass: the node's description, the packages the jobs need that
    it lacks (``missing``), and CIFAR-10 made ready there (``bench.data.prepare_cifar10``: found and checked,
    else downloaded into ``--data-dir``, ``$TWINBENCH_DATA_DIR`` or the node's persistent ``~/.cache/twinbench``,
    never into Ray's shipped working copy) or why not (``data_error``)."""
    info = node_info()
    p = subprocess.run([sys.executable, "-c", NODE_PREP, data_dir or "", ",".join(packages), "1" if need_data else "0"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _pythonpath()})
    said = dict(line.split(":", 1) for line in p.stdout.splitlines() if line.split(":", 1)[0] in
                ("missing", "data", "data_error"))
    if said.get("missing"):
        info["missing"] = said["missing"].split(",")
    if need_data:
        info["data"] = said.get("data")
        if "data" not in said:
            tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
            info["data_error"] = said.get("data_error") or f"preparing CIFAR-10 failed: {tail}"
        info["data_error"] = info.get("data_error", "")[:600] or None
    return info


def node_problems(info: dict) -> list[str]:
    """One sentence per thing a prepared node lacks for the run's jobs (see :func:`prepare_node`)."""
    where = f"Ray node {info.get('hostname', '?')} ({info.get('ip', '?')})"
    found = []
    if info.get("missing"):
        found.append(f"{where} lacks the package(s) {', '.join(info['missing'])} that this run's jobs need: install "
                     f"them in that node's environment ({INSTALL_HINT.replace('[ray]', '[all,ray]')}), or leave those "
                     "jobs out")
    if info.get("data_error"):
        found.append(f"{where} cannot serve the jobs that read CIFAR-10: {info['data_error'].rstrip('.')}. Give --data-dir "
                     "a folder on shared storage that every node can read, or put CIFAR-10 into that node's cache "
                     "($TWINBENCH_DATA_DIR or ~/.cache/twinbench there), or leave the data jobs out")
    return found


def _ray_token_here() -> bool:
    """A Ray authentication token is available to this process (Ray's own sources, in its order)."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def _pythonpath() -> str:
    """PYTHONPATH with this checkout first (once), so child processes import the same ``bench``."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    return os.pathsep.join([str(ROOT)] + rest)


def _read_rows(out: Path) -> list[tuple[str, dict]]:
    from bench.results.read import read_rows  # whole rows only: a damaged one is dropped with a note
    rows = []
    for kind in KINDS:
        rows += [(kind, r) for r in read_rows(out / FILES[kind], kind)]
    return rows


def _files(d: Path) -> dict[str, bytes]:
    """Every finished file in folder ``d`` (none: empty), by name, to send back to the driver."""
    return {p.name: p.read_bytes() for p in d.glob("*") if p.is_file() and ".tmp" not in p.name} if d.is_dir() else {}


def _write_files(d: Path, files: dict[str, bytes]) -> None:
    """Write files sent back by a task into ``d``, each whole or not at all (a temporary name, then a rename)."""
    if files:
        d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        tmp = d / f".{name}.part"
        tmp.write_bytes(data)
        os.replace(tmp, d / name)


def run_job_task(job_dict: dict, run_id: str, data_dir: str | None, timeout: float | None,
                 checkpoints: dict[str, bytes]) -> dict:
    """Ray task: run one job with ``bench.pipeline.jobs.run_job`` into a temporary folder on this node; return what
    it wrote (rows, log, checkpoints, profile traces) and the node. A worker that died without a row raises WorkerDied."""
    from bench.pipeline.jobs import run_job
    job = Job(**job_dict)
    os.environ["PYTHONPATH"] = _pythonpath()  # the worker imports bench from where this task did
    with tempfile.TemporaryDirectory(prefix="twinbench-job-") as tmp:
        out = Path(tmp)
        if checkpoints:
            (out / "checkpoints").mkdir()
            for name, data in checkpoints.items():
                (out / "checkpoints" / name).write_bytes(data)
        status, msg = run_job(job, out, run_id, data_dir, timeout)
        logs = list((out / "logs").glob("*.log"))
        result = {"status": status, "msg": msg, "rows": _read_rows(out), "node": node_info(),
                  "log": logs[0].read_text(errors="replace") if logs else "",
                  "checkpoints": _files(out / "checkpoints"), "traces": _files(out / "traces")}
    if status == "error" and msg.startswith("worker died"):
        raise WorkerDied(msg, result)
    return result


def _queues(todo: list[Job]) -> list[list[Job]]:
    """The jobs as queues sent one job at a time: a memory sweep is one chain (the next batch is sent after the
    previous one, skipped after an OOM), every other job its own; longest first (by the plan's estimate), so that
    with N devices the run ends near total/N, not at a long training started last."""
    from bench.pipeline.jobs import sweep_tag
    from bench.pipeline.suites import estimate_seconds
    chains: dict[str, list[Job]] = {}
    for j in todo:
        chains.setdefault(sweep_tag(j.job_id) if j.kind == "memory" else j.job_id, []).append(j)
    return sorted(chains.values(), key=lambda q: -sum(estimate_seconds(j) for j in q))


class RayExecutor(Executor):
    """Every job a Ray task on whichever node has the resources it asks for; the driver writes the rows."""

    name = "ray"
    runs_here = False  # each node prepares CIFAR-10 itself (one task per node) and brings its own packages

    def __init__(self, address: str | None, retries: int = 1, jobs_per_device: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutorError(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
        self.ray, self.address, self.retries, self.jobs_per_device = ray, address, retries, jobs_per_device
        self.nodes: dict[str, dict] = {}
        self._started_here = False
        self._prepared = False
        self._start()

    def _start(self) -> None:
        ray = self.ray
        env = {k: v for k, v in os.environ.items() if k.startswith("TWINBENCH_")}
        runtime_env: dict = {"env_vars": env}
        if self.address:  # another machine may not have this checkout: ship the code (not data or results)
            runtime_env.update(working_dir=str(ROOT), excludes=UPLOAD_EXCLUDES)
        else:
            env["PYTHONPATH"] = _pythonpath()
        if self.address and self.address != "auto" and "RAY_AUTH_MODE" not in os.environ and _ray_token_here():
            # as Ray does for address="auto": a head started where a token exists requires it, and a driver that
            # names HOST:PORT sends it only in token mode (else: InvalidAuthToken, and a refused connection)
            os.environ["RAY_AUTH_MODE"] = "token"
        try:
            if ray.is_initialized():
                return
            if self.address:
                ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
                self._started_here = True
        except Exception as e:  # ConnectionError, RuntimeError, ray.exceptions.AuthenticationError, ...
            raise ExecutorError(f"could not start or join Ray at {self.address or 'a local instance'}: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}. Start a head first "
                                "(ray start --head) or drop --ray-address for a local instance; a head with token "
                                "authentication needs its token here (~/.ray/auth_token or $RAY_AUTH_TOKEN, see README)"
                                ) from None

    def _alive(self) -> list[dict]:
        return [n for n in self.ray.nodes() if n.get("Alive") and
                (n["Resources"].get("CPU", 0) > 0 or n["Resources"].get("GPU", 0) > 0)]

    def gpu_available(self) -> bool:
        return self.ray.cluster_resources().get("GPU", 0) > 0

    def resources(self, job: Job) -> dict:
        """What a job's task asks Ray for: a whole GPU (or 1/K of one for a shared throughput job) and a
        core; a scaling job, its R GPUs and R cores (one task on one node); on a CPU, all the cores of the largest
        node (1/K of them for a shared throughput job)."""
        share = self.jobs_per_device if job.kind == "throughput" else 1
        if job.device == "cuda":
            if job.replicas:  # a data-parallel job: all its GPUs on one node (a Ray task never spans nodes)
                return {"num_gpus": job.replicas, "num_cpus": job.replicas}
            return {"num_gpus": 1 / share, "num_cpus": 1}
        cpus = max([int(n["Resources"].get("CPU", 0)) for n in self._alive()] or [1])
        return {"num_gpus": 0, "num_cpus": max(1, cpus // share)}

    def check_nodes(self, todo: list[Job], data_dir: str | None) -> list[str]:
        """Every alive node prepared once (``prepare_node``: packages, CIFAR-10 when a job reads it); the problems
        of every node, one sentence each. A node that left meanwhile runs no job anyway: a warning."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from bench.pipeline.preflight import needs_real_data
        need_data = any(needs_real_data(j) for j in todo)
        packages = tuple(sorted({p for j in todo for p in j.stack.packages}))
        prep = [ray.remote(prepare_node).options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(data_dir, need_data, packages) for n in self._alive()]
        found: list[str] = []
        for ref in prep:
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as e:
                print(f"warning: a Ray node could not be prepared ({type(e).__name__}); going on", file=sys.stderr)
                continue
            self.nodes.setdefault(info["node_id"], {**info, "jobs": 0})
            found += node_problems(info)
        self._prepared = True
        return found

    def run(self, todo: list[Job], ctx: RunContext, on_start: Callable[[Job], None]) -> Iterator[tuple[Job, str]]:
        ray = self.ray
        self._start()  # nothing when Ray is up; a later round of a run (--find-max-batch): the first one shut it down
        if not self._prepared:  # bench.run prepares the nodes in its precondition pass; another caller here
            for problem in self.check_nodes(todo, ctx.data_dir):
                print(f"warning: {problem}", file=sys.stderr)
        task = ray.remote(run_job_task)
        has_gpu = self.gpu_available()
        queues = _queues(todo)
        pending: dict = {}
        done: list[tuple[Job, str]] = []

        def submit(q: list[Job]) -> None:
            while q:
                job = q.pop(0)
                if _oom_swept(job, ctx):
                    done.append((job, record_skipped(job, ctx)))
                    continue
                if job.device == "cuda" and not has_gpu:
                    self._failure(job, ctx, "the Ray cluster has no GPU for this cuda job")
                    done.append((job, "error"))
                    continue
                ref = task.options(**self.resources(job), max_retries=self.retries, retry_exceptions=[WorkerDied]).remote(
                    job.to_dict(), ctx.run_id, ctx.data_dir, job_timeout(job, ctx), self._checkpoints_of(job, ctx))
                pending[ref] = (job, q)
                return

        finished = False
        try:
            for q in queues:
                submit(q)
            while pending or done:
                while done:
                    yield done.pop(0)
                if not pending:
                    break
                on_start(next(iter(pending.values()))[0])  # the oldest task still out: running, most likely
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job, q = pending.pop(ref)
                status = self._collect(ref, job, ctx)
                done.append((job, status))
                submit(q)  # after an OOM the rest of its sweep is recorded as skipped (_oom_swept)
            finished = True
        finally:
            if not finished and pending:  # Ctrl-C / SIGTERM: cancel what is left; finished rows are kept
                refs = list(pending)
                for ref in refs:
                    ray.cancel(ref)
                try:
                    ray.wait(refs, num_returns=len(refs), timeout=20)
                except Exception:
                    pass
            self._write_meta(ctx)
            if self._started_here:
                ray.shutdown()

    def _checkpoints_of(self, job: Job, ctx: RunContext) -> dict[str, bytes]:
        d = ctx.out / "checkpoints"
        if job.kind != "epochs" or not d.is_dir():
            return {}
        return {p.name: p.read_bytes() for p in d.glob(f"*{_ckpt_token(job)}*") if ".tmp" not in p.name}

    def _collect(self, ref, job: Job, ctx: RunContext) -> str:
        """Append a finished task's rows, log, checkpoints and traces to the run; returns the job's status."""
        from ray.exceptions import RayError
        try:
            res = self.ray.get(ref)
        except RayError as e:  # every try died, or the Ray worker or its node died every time
            cause = getattr(e, "cause", None) or e
            if isinstance(cause, WorkerDied):
                return self._collect_died(cause, job, ctx)
            msg = f"{type(cause).__name__}: {str(cause).strip().splitlines()[0][:300] if str(cause).strip() else ''}"
            self._failure(job, ctx, f"Ray task failed after {self.retries + 1} tries: {msg}")
            return "error"
        return self._keep(res, job, ctx)

    def _collect_died(self, e: WorkerDied, job: Job, ctx: RunContext) -> str:
        """Every try's worker died without a row: keep what the last try left, saying how often it was tried."""
        res = e.result
        for _kind, row in res["rows"]:
            if row["job_id"] == job.job_id and row["status"] == "error":
                row["error"] = f"{row['error']} (tried {self.retries + 1} times on Ray)"
        return self._keep(res, job, ctx)

    def _keep(self, res: dict, job: Job, ctx: RunContext) -> str:
        for kind, row in res["rows"]:
            append_row(ctx.out / FILES[kind], kind, row)
        log = ctx.out / "logs" / (job.job_id.replace("/", "_") + ".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"[ray node {res['node']['hostname']} {res['node']['node_id'][:12]}]\n{res['log']}")
        for folder in ("checkpoints", "traces"):  # a profile job's traces: rows name them relative to the run
            _write_files(ctx.out / folder, res.get(folder) or {})
        node = self.nodes.setdefault(res["node"]["node_id"], {**res["node"], "jobs": 0})
        node["jobs"] += 1
        return res["status"]

    def _failure(self, job: Job, ctx: RunContext, msg: str) -> None:
        from bench.pipeline.jobs import record_failure
        record_failure(job, ctx.out, ctx.run_id, "error", msg)

    def _write_meta(self, ctx: RunContext) -> None:
        """run_meta.json's ``ray`` entry: the address and every node that ran a job (over all resumes)."""
        from bench.results.read import Unreadable, note, read_meta
        from bench.results.writes import write_json_atomic
        path = ctx.out / "run_meta.json"
        if not path.exists():
            return
        try:
            meta = read_meta(ctx.out)
        except Unreadable as e:  # damaged since the run began: the rows are safe, the node record is not kept
            note(f"the Ray nodes were not recorded: {e}")
            return
        entry = meta.setdefault("ray", {"address": self.address or "local instance", "nodes": []})
        known = {n["node_id"]: n for n in entry["nodes"]}
        for nid, n in self.nodes.items():
            if n["jobs"]:
                if nid in known:
                    known[nid]["jobs"] += n["jobs"]
                else:
                    entry["nodes"].append(dict(n))
        self.nodes = {nid: {**n, "jobs": 0} for nid, n in self.nodes.items()}
        write_json_atomic(path, meta)
