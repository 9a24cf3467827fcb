"""The ``profile`` measure: where one training step's time goes, layer by layer (``Stack.profile``).

One row per (layer, kind, phase) with its milliseconds per step and share of the step, then one summary
row (layer ``(step)``): the profiled and unprofiled step time (the profiler's overhead), the coverage (the
share attributed to a named layer, the loss or the optimizer), the share fused across layers, and the
trace kept under ``results/<run_id>/traces/``. A stack without a sound attribution writes the summary row
alone, coverage empty and its null reason.
"""
from __future__ import annotations

import os
from pathlib import Path

from bench.core import phases
from bench.core.job import Job
from bench.results.schema import FILES, PROFILE_STEP_ROW, append_rows


def run_profile(job: Job, out: Path, row: dict, data_dir: str | None) -> None:
    """Profile ``job.steps`` train steps of ``job``'s stack; the layer rows, then the summary row."""
    from bench.stacks import get_stack
    from bench.zoo import get_spec
    traces = out / "traces"
    traces.mkdir(parents=True, exist_ok=True)
    options = {"depth": job.depth} if job.depth is not None else None
    phases.enter("build")  # the stack enters data, first_step and timed (the profiler's steps) itself
    from bench.stacks.base import ProfileSpec
    p = get_stack(job.framework, job.keras_backend).profile(ProfileSpec(
        job.model, job.batch_size, job.precision, job.device, job.exec_mode, job.steps, str(traces), options))
    row.update(p.env, exec_mode=p.exec_mode, measurement="train", profile_steps=job.steps, profile_source=p.source,
               depth=get_spec(job.model, **(options or {})).depth)
    step = p.profiled_step_ms
    phases.enter("write")
    rows = [{**row, "layer": r.layer, "kind": r.kind, "phase": r.phase, "ms_per_step": r.ms_per_step, "calls": r.calls,
             "share_of_step": r.ms_per_step / step if step else None, "status": "ok"} for r in p.rows]
    trace = os.path.relpath(p.trace_path, out) if p.trace_path else None
    overhead = step / p.unprofiled_step_ms if step and p.unprofiled_step_ms else None
    rows.append({
        **row, "layer": PROFILE_STEP_ROW, "kind": None, "phase": None, "ms_per_step": step,
        "share_of_step": 1.0 if step else None, "profiled_step_ms": step, "unprofiled_step_ms": p.unprofiled_step_ms,
        "profiler_overhead": overhead, "coverage": p.coverage, "fused_share": p.fused_share, "trace_path": trace,
        "null_reason": p.null_reason, "status": "ok"})
    append_rows(out / FILES["profile"], "profile", rows)  # the layers and the summary: whole, or absent
    _roofline(job, out, row, p.rows, options)


def _roofline(job: Job, out: Path, row: dict, rows, options: dict | None) -> None:
    """The profile's layer kinds against the run's roofs (``bench.measures.roofline``): roofline.csv's rows."""
    from bench.core.roofs import compute_roof
    from bench.measures.roofline import dtype_bytes, join, layer_lists, profile_times, run_roofs
    from bench.results.schema import COMMON
    from bench.zoo import get_spec
    times = profile_times(rows)
    if not times:
        return
    work = layer_lists(get_spec(job.model, **(options or {})), job.batch_size, dtype_bytes(job.precision))
    roofs = run_roofs(out)
    base = {k: row[k] for k, _, _ in COMMON if k in row and k != "null_reason"}
    when = f"{roofs.get('measured_at')} ({roofs.get('method')})" if roofs else None
    append_rows(out / FILES["roofline"], "roofline", [
        {**base, **r, "depth": row.get("depth"), "roofs_measured": when, "status": "ok"}
        for r in join(times, work, compute_roof(roofs, row.get("backend"), job.precision), roofs)])
