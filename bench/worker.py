"""Child process of ``bench.run``: runs one job and appends its rows to ``results/<run_id>/*.csv``.

``python -m bench.worker --out DIR --run-id ID --job JSON``. The environment (KERAS_BACKEND,
preallocation off, CPU-only when asked) is set here *before* any framework import, which is why each
job gets its own process (as timm's bulk_runner does). A Python exception becomes a row with
``status=error`` (or ``oom``); a crash that leaves no row is recorded by the parent.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from bench.schema import FILES, append_row
from bench.suites import Job


def configure_env(job: Job) -> None:
    from bench.memory import PREALLOC_OFF
    os.environ.update(PREALLOC_OFF)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if job.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        os.environ["JAX_PLATFORMS"] = "cpu"
    if job.framework == "keras":
        os.environ["KERAS_BACKEND"] = job.keras_backend or "tensorflow"
        if job.keras_backend == "torch":
            import torch  # noqa: F401  (Keras wants torch imported first on its torch backend)


def _die_with_parent() -> None:
    """Linux: this job dies with its ``bench.run`` (``kill -9`` of the run leaves no orphan that would write a
    row after a ``--resume`` has started the same job again). Best effort elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal
        ppid = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != ppid:  # the parent died before the call
            os._exit(1)
    except (OSError, AttributeError):
        pass


def base_row(job: Job, run_id: str) -> dict:
    """The columns a job knows before it runs (a failed job's row has at least these)."""
    row = {"run_id": run_id, "job_id": job.job_id, "model": job.model, "framework": job.framework,
           "backend": job.keras_backend if job.framework == "keras" else "torch", "exec_mode": job.exec_mode,
           "device": job.device, "precision": job.precision, "batch_size": job.batch_size}
    if job.kind in ("throughput", "memory"):
        row["measurement"] = job.measurement
    if job.kind == "throughput":
        row["input"] = job.input
    if job.kind == "epochs":
        row["recipe"] = job.recipe
    return row


def _mflops(model: str) -> float | None:
    try:
        from bench.counts import flops_per_image
        from bench.models import build
        return flops_per_image(build(model, "torch"))[0] / 1e6
    except ImportError:
        return None


def run_throughput(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    from bench.runners import make_step
    from bench.timing import measure, summarize
    r = make_step(job.model, job.framework, job.measurement, job.batch_size, job.precision, job.input,
                  job.device, job.exec_mode, data_dir=data_dir)
    row.update(r.env, exec_mode=r.exec_mode, channels_last=r.channels_last,
               params_trainable=r.params[0], params_total=sum(r.params))
    m = measure(r, job.steps, job.max_warmup)
    times = m.pop("times")
    row.update(summarize(times, job.batch_size), **m, step_times_ms=" ".join(f"{t * 1e3:.4f}" for t in times),
               fwd_mflops_per_image=_mflops(job.model))
    append_row(out / FILES["throughput"], "throughput", {**row, "status": "ok"})


def run_memory(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    """A memory row: on a GPU the allocator peak over timed steps (primary), and on every device what one
    training step keeps (saved activations, weights, gradients, optimizer state; ``bench.memory``)."""
    from bench.env import framework_env
    from bench.memory import for_framework, is_oom
    from bench.models import get_spec
    mem = for_framework(job.framework, row["backend"])
    options = {"depth": job.depth} if job.depth is not None else {}
    row.update(oom=False, depth=get_spec(job.model, **options).depth)
    reasons, peak, sampler = [], None, None
    try:
        if job.device == "cuda" and not options:
            peak, sampler = _allocator_peak(job, row, mem, reasons)
        else:
            row.update(framework_env(job.framework, job.device), exec_mode=mem.exec_mode)
            reasons.append("no GPU: allocator peak not defined on the CPU; no timed steps (the throughput suite times them)"
                           if job.device != "cuda" else "no allocator peak for a depth-sweep job (the batch sweep measures it)")
        if job.device == "cuda" and not mem.measure_on_gpu:
            from bench.memory import StepMemory
            sm = StepMemory(reasons=[f"{mem.name}: step memory is measured by CPU memory runs, not on a GPU"])
        else:
            sm = mem.step_memory(job.model, job.batch_size, job.precision, job.device, **options)
    except Exception as e:
        if not is_oom(e):
            raise
        row.update(oom=True, status="oom", error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                   null_reason="out of memory at this batch size")
        append_row(out / FILES["memory"], "memory", row)
        return
    if row.get("params_trainable") is None:
        row["params_trainable"] = sm.trainable_count
    row.update(sm.columns(peak), null_reason="; ".join(reasons + sm.reasons) or None, status="ok")
    append_row(out / FILES["memory"], "memory", row)
    for smp in sampler.samples if sampler else ():
        append_row(out / FILES["nvml"], "nvml", {**base_row(job, row["run_id"]), **{k: row[k] for k in (
            "backend", "framework_version", "backend_version", "device", "device_name")}, **smp, "status": "ok"})


def _allocator_peak(job: Job, row: dict, mem, reasons: list[str]):
    """Timed steps on the GPU with the allocator peak read over them; returns (peak bytes or None, sampler)."""
    from bench.nvml import Sampler
    from bench.runners import make_step
    from bench.timing import summarize, timed
    r = make_step(job.model, job.framework, job.measurement, job.batch_size, job.precision, "synthetic",
                  job.device, job.exec_mode)
    row.update(r.env, exec_mode=r.exec_mode, params_trainable=r.params[0])
    r.step()  # compile / autotune outside the measured steps
    r.sync()
    mem.reset_peak()
    with Sampler() as sampler:
        times = [timed(r.step, r.sync) for _ in range(job.steps)]
    peak, source = mem.peak_bytes()
    if peak is None:
        reasons.append(source)
    if sampler.unavailable:
        reasons.append(sampler.unavailable)
    s = summarize(times, job.batch_size)
    row.update(peak_alloc_mib=None if peak is None else peak / 2**20, peak_alloc_source=source if peak else None,
               step_ms_median=s["step_ms_median"], images_per_s=s["images_per_s"], **sampler.summary())
    return peak, sampler


def run_epochs(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    from bench.data import load_cifar10
    from bench.env import framework_env
    from bench.models import get_spec
    from bench.recipes import recipe_for
    from bench.train import TrainConfig, checkpoint_path, train_keras, train_torch
    recipe = recipe_for(job.recipe, get_spec(job.model).family, epochs=job.epochs, batch_size=job.batch_size)
    row.update(framework_env(job.framework, job.device), recipe=recipe.name)
    data = load_cifar10(data_dir)
    row["data_source"] = data.kind
    ckdir = out / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(job.model, recipe, job.precision, seed=job.seed, device=job.device, train_subset=job.train_subset,
                      exec_mode=job.exec_mode, test_subset=job.test_subset, progress=sys.stderr.isatty(),
                      checkpoint=checkpoint_path(ckdir, job.model, job.framework, row["backend"], job.precision,
                                                 f"{recipe.name}-{job.job_id.replace('/', '_')}"))
    row["exec_mode"] = resolved_exec_mode(job)
    written = _epochs_written(out / FILES["epochs"], job.job_id)

    def on_epoch(r: dict) -> None:
        if r["epoch"] not in written:  # else: its row went in, then a kill or a full disk cut the checkpoint
            append_row(out / FILES["epochs"], "epochs", {**row, **r, "status": "ok"})
    (train_torch if job.framework == "torch" else train_keras)(cfg, data, on_epoch)


def _epochs_written(path: Path, job_id: str) -> set[int]:
    """Epochs of this training that already have their row (a resumed job)."""
    if not path.exists():
        return set()
    import csv
    with open(path, newline="") as f:
        return {int(r["epoch"]) for r in csv.DictReader(f) if r["job_id"] == job_id and r["status"] == "ok" and r["epoch"]}


def resolved_exec_mode(job: Job) -> str:
    """The exec mode a training job runs in (its own, or the framework's default on its device and backend)."""
    if job.exec_mode:
        return job.exec_mode
    if job.framework == "torch":
        return "eager"
    from bench.runners import default_keras_exec_mode
    return default_keras_exec_mode(job.device, job.keras_backend or "tensorflow")


RUNNERS = {"throughput": run_throughput, "memory": run_memory, "epochs": run_epochs}


def _first_time(run_id: str, job_id: str) -> bool:
    """True once per (run, job): the marker lives in $TWINBENCH_FAULT_DIR (default: the temp folder)."""
    import hashlib
    import tempfile
    d = os.environ.get("TWINBENCH_FAULT_DIR") or tempfile.gettempdir()
    marker = Path(d) / f"twinbench-crash-once-{hashlib.sha1(f'{run_id}/{job_id}'.encode()).hexdigest()[:16]}"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.worker", description="Run one TwinBench job (internal).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--job", required=True, help="the job as JSON (bench.suites.Job fields)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    job = Job(**json.loads(args.job))
    out = Path(args.out)
    _die_with_parent()
    configure_env(job)
    row = base_row(job, args.run_id)
    # test hook: TWINBENCH_INJECT_FAULT="crash:<job_id>;oom:<job_id>;hang:<job_id>;crash-once:<job_id>"
    # (enospc:<file>: bench.writes)
    faults = {tuple(f.split(":", 1)[::-1]) for f in os.environ.get("TWINBENCH_INJECT_FAULT", "").split(";") if ":" in f}
    from bench.writes import ResultsWriteError
    try:
        return _run(job, out, row, args.data_dir, faults)
    except ResultsWriteError as e:  # disk full / not writable: say so (the parent stops the suite), no traceback
        print(f"error: {e}", file=sys.stderr)
        return 3


def _run(job: Job, out: Path, row: dict, data_dir: str | None, faults: set) -> int:
    try:
        if (job.job_id, "crash") in faults:
            os._exit(3)  # dies like a segfault would: no row, the parent records it
        if (job.job_id, "hang") in faults:
            import time
            print("injected hang (TWINBENCH_INJECT_FAULT)", file=sys.stderr, flush=True)
            time.sleep(3600)  # a job that is still running when the whole run is killed
        if (job.job_id, "crash-once") in faults and _first_time(row["run_id"], job.job_id):
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-job (OOM killer, a lost node), the first time only: a retry runs
        if (job.job_id, "oom") in faults:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by TWINBENCH_INJECT_FAULT)")
        RUNNERS[job.kind](job, out, row, data_dir)
    except Exception as e:
        from bench.writes import ResultsWriteError
        if isinstance(e, ResultsWriteError):
            raise
        from bench.data import DataError
        from bench.memory import is_oom
        status = "oom" if is_oom(e) else "error"
        msg = f"{type(e).__name__}: {e}" if isinstance(e, DataError) else f"{type(e).__name__}: {str(e)[:500]}"
        if not isinstance(e, DataError):
            traceback.print_exc()
        extra = {"oom": True} if job.kind == "memory" else {}
        append_row(out / FILES[job.kind], job.kind, {**row, **extra, "status": status, "error": msg,
                                                     "null_reason": "job failed" if status == "error" else
                                                     "out of memory at this batch size"})
        return 0 if status == "oom" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
