"""The ``memory`` measure: on a GPU the allocator peak over timed steps (primary), and on every device what
one training step keeps (saved activations, weights, gradients, optimizer state), from the stack's memory
counter (``Stack.memory()``)."""
from __future__ import annotations

from pathlib import Path

from bench.core import phases
from bench.core.job import Job
from bench.core.nvml import Sampler
from bench.measures.timing import summarize, timed
from bench.results.schema import FILES, append_row
from bench.stacks.base import StepMemory, is_oom


def run_memory(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    """A memory row: on a GPU the allocator peak over timed steps (primary), and on every device what one
    training step keeps (saved activations, weights, gradients, optimizer state; the stack's ``MemoryCounter``)."""
    from bench.stacks import get_stack
    from bench.zoo import get_spec
    stack = get_stack(job.framework, job.keras_backend)
    mem = stack.memory()
    options = {"depth": job.depth} if job.depth is not None else {}
    row.update(oom=False, depth=get_spec(job.model, **options).depth)
    reasons, peak, sampler = [], None, None
    phases.enter("build")
    try:
        if job.device == "cuda" and not options:
            peak, sampler = _allocator_peak(job, row, stack, mem, reasons)
        else:
            row.update(stack.env(job.device), exec_mode=mem.exec_mode)
            reasons.append("no GPU: no GPU allocator peak (peak_alloc_mib) on the CPU; no timed steps (the throughput "
                           "suite times them)"
                           if job.device != "cuda" else "no allocator peak for a depth-sweep job (the batch sweep measures it)")
        if job.device == "cuda" and not mem.measure_on_gpu:
            sm = StepMemory(reasons=[f"{mem.name}: step memory is measured by CPU memory runs, not on a GPU"])
        else:
            phases.enter("timed")  # a fresh model and one measured step (its build inside)
            sm = mem.step_memory(job.model, job.batch_size, job.precision, job.device, **options)
    except Exception as e:
        if not is_oom(e):
            raise
        row.update(oom=True, status="oom", error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                   null_reason="out of memory at this batch size")
        phases.enter("write")
        append_row(out / FILES["memory"], "memory", row)
        return
    if row.get("params_trainable") is None:
        row["params_trainable"] = sm.trainable_count
    row.update(sm.columns(peak), null_reason="; ".join(reasons + sm.reasons) or None, status="ok")
    phases.enter("write")
    append_row(out / FILES["memory"], "memory", row)
    for smp in sampler.samples if sampler else ():
        append_row(out / FILES["nvml"], "nvml", {**job.base_row(row["run_id"]), **{k: row[k] for k in (
            "backend", "framework_version", "backend_version", "device", "device_name")}, **smp, "status": "ok"})


def _allocator_peak(job: Job, row: dict, stack, mem, reasons: list[str]):
    """Timed steps on the GPU with the allocator peak read over them; returns (peak bytes or None, sampler)."""
    from bench.stacks.base import StepSpec
    r = stack.make_step(StepSpec(job.model, job.measurement, job.batch_size, job.precision, "synthetic", job.device,
                                 job.exec_mode))
    row.update(r.env, exec_mode=r.exec_mode, params_trainable=r.params[0])
    phases.enter("first_step")
    r.step()  # compile / autotune outside the measured steps
    r.sync()
    mem.reset_peak()
    with Sampler() as sampler:
        phases.enter("timed")
        times = [timed(r.step, r.sync) for _ in range(job.steps)]
    phases.enter(None)
    peak, source = mem.peak_bytes()
    if peak is None:
        reasons.append(source)
    if sampler.unavailable:
        reasons.append(sampler.unavailable)
    s = summarize(times, job.batch_size)
    row.update(peak_alloc_mib=None if peak is None else peak / 2**20, peak_alloc_source=source if peak else None,
               step_ms_median=s["step_ms_median"], images_per_s=s["images_per_s"], **sampler.summary())
    return peak, sampler


BISECT_STEPS = 6  # --find-max-batch: the most bisection steps per sweep (a gap of 64 closes in 6)


def next_batch(tried: dict[int, str]) -> int | None:
    """``--find-max-batch``: the batch to try next in one memory sweep, as timm's benchmark lowers the batch after an
    out-of-memory, by bisection: the midpoint between the largest batch that fit (0 when none did) and the smallest
    that was out of memory; None when there is no out-of-memory batch, the gap is closed, or the midpoint was
    already tried (an ``error`` row there ends the bisection). ``tried``: {batch: status} of the sweep's rows."""
    oom = [b for b, s in tried.items() if s == "oom"]
    if not oom:
        return None
    hi = min(oom)
    lo = max((b for b, s in tried.items() if s == "ok" and b < hi), default=0)
    mid = (lo + hi) // 2
    return None if hi <= lo + 1 or mid in tried else mid


SWEEP = ("model", "framework", "backend", "exec_mode", "precision", "measurement", "depth")


def largest_fit(df) -> list[str]:
    """One sentence per memory sweep with an out-of-memory batch: the largest batch that fit (an ``ok`` row) and the
    smallest that did not (an ``oom`` row), or that no batch tried fit; [] when no batch ran out of memory. ``df``:
    memory rows (a DataFrame, its current rows)."""
    if df is None or not len(df) or not (df.status == "oom").any():
        return []
    keys = [c for c in SWEEP if c in df]
    said = []
    rows = df[df.status.isin(["ok", "oom"])]
    # one sweep: the job id without its batch (an oom row written by the worker has no depth: not a column key)
    sweep = rows.job_id.map(lambda j: "/".join(j.split("/")[:4] + j.split("/")[5:])) if "job_id" in rows else keys
    for _, g in rows.groupby(sweep, dropna=False, sort=True):
        key = [g[c].dropna().iloc[0] if g[c].notna().any() else None for c in keys]
        oom = g[g.status == "oom"].batch_size
        if not len(oom):
            continue
        first_oom = int(oom.min())
        fit = g[(g.status == "ok") & (g.batch_size < first_oom)].batch_size
        name = " ".join((f"depth {int(float(v))}" if c == "depth" else str(v)) for v, c in zip(key, keys)
                        if c != "backend" and str(v) not in ("", "nan", "None"))
        said.append(f"{name}: largest batch that fit {int(fit.max())} ({first_oom} out of memory)" if len(fit) else
                    f"{name}: no batch fit (the smallest tried, {first_oom}, out of memory)")
    return said
