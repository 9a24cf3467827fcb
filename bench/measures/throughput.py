"""The ``throughput`` measure: a stack's step timed as the suites time it (``bench.measures.timing``)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from bench.core import phases
from bench.core.hygiene import CpuWindow, GpuWindow, flag, malloc_setting
from bench.core.job import Job
from bench.measures.timing import MIN_TIMED_S, Slowed, injected_slowdown, measure, summarize
from bench.results.schema import FILES, append_row


def _mflops(model: str) -> float | None:
    """Forward MFLOPs per image: the table counted on the torch twin (``bench.zoo.count_table``), else counted now
    on the torch twin (None where torch is not installed). A Keras job no longer imports torch for it."""
    from bench.zoo.counts import counted
    known = counted(model)
    if known is not None:
        return known[2] / 1e6
    try:
        from bench.zoo import build
        from bench.zoo.counts import flops_per_image
        return flops_per_image(build(model, "torch"))[0] / 1e6
    except ImportError:
        return None


@contextmanager
def _windows(cpu: CpuWindow, nv: GpuWindow | None):
    """The machine-load window, and the NVML one on a GPU, around the timed samples."""
    with cpu:
        if nv is None:
            yield
        else:
            with nv:
                yield


def hygiene(times: list[float], cpu: CpuWindow, nv: GpuWindow | None, threads: int, images: int) -> dict:
    """The row's hygiene columns: CV, machine load, threads, GPU state and energy, the flag, and null reasons."""
    from bench.results.stats import drift_cv
    malloc, malloc_why = malloc_setting()
    cols = {"step_cv": drift_cv(times), "cpu_others_load_cores": cpu.others_cores, "cpu_threads": threads,
            "cpu_malloc": malloc}
    reasons = [r for r in (cpu.why, malloc_why) if r]
    if nv is None:
        reasons.append("CPU job: GPU clocks, power, temperature, throttle reasons and energy not defined")
    else:
        cols.update(nv.columns(images))
        if nv.why:
            reasons.append(nv.why)
    cols["hygiene_flag"] = flag(cpu.others_cores, cols["step_cv"], cols.get("gpu_other_processes"))
    cols["null_reason"] = "; ".join(reasons) or None
    return cols


def _roof_fraction(job: Job, out: Path, row: dict) -> None:
    """``achieved_gflops`` and ``roof_fraction`` against the roofs the run recorded (``bench.measures.roofline``)."""
    from bench.measures.roofline import run_roofs, throughput_columns
    cols = throughput_columns(job.model, job.measurement, row.get("images_per_s"), row.get("backend"), job.precision,
                              run_roofs(out))
    why = cols.pop("null_reason", None)
    if why:
        row["null_reason"] = "; ".join(r for r in (row.get("null_reason"), why) if r)
    row.update(cols)


def run_throughput(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    """Time ``job``'s step: first step, warm-up until stable, ``job.steps`` samples; one throughput row."""
    from bench.stacks import get_stack
    phases.enter("build")  # the stack enters data and build itself
    from bench.stacks.base import StepSpec
    r = get_stack(job.framework, job.keras_backend).make_step(StepSpec(
        job.model, job.measurement, job.batch_size, job.precision, job.input, job.device, job.exec_mode,
        data_dir=data_dir))
    row.update(r.env, exec_mode=r.exec_mode, channels_last=r.channels_last,
               params_trainable=r.params[0], params_total=sum(r.params))
    from bench.core.stack_registry import stack_name
    stack = get_stack(job.framework, job.keras_backend)
    slow = injected_slowdown(job.job_id, f"{stack_name(job.framework, job.keras_backend)} {r.exec_mode}")
    gpu = row.get("device") == "cuda"
    cpu, nv = CpuWindow(), GpuWindow() if gpu else None
    m = measure(Slowed(r, slow) if slow != 1.0 else r, job.steps, job.max_warmup, around_timed=_windows(cpu, nv),
                min_time_s=MIN_TIMED_S)
    times = m.pop("times")
    row.update(summarize(times, job.batch_size), **m, step_times_ms=" ".join(f"{t * 1e3:.4f}" for t in times),
               fwd_mflops_per_image=_mflops(job.model))
    row.update(hygiene(times, cpu, nv, stack.threads(), job.batch_size * len(times) * m["steps_per_sample"]))
    _roof_fraction(job, out, row)
    phases.enter("write")
    append_row(out / FILES["throughput"], "throughput", {**row, "status": "ok"})
