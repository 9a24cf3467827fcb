"""How far from the limit: a step profile's layer kinds and a throughput row against this machine's roofs.

The roofs are those the run recorded in its ``run_meta.json`` (``bench.core.roofs.for_run``, measured by
``python -m bench.peaks``); the work is counted from the spec (``bench.zoo.work``). For each layer kind and phase of
a profile: achieved GFLOP/s and GB/s, arithmetic intensity, t_min = max(FLOPs / compute roof, bytes / bandwidth
roof), efficiency = t_min / measured time, ``limiting_roof`` (the roof the kind's intensity puts it under: compute at
or above the ridge point, compute roof / bandwidth roof; memory below it) and ``bound``:

- ``compute``: the kind's intensity is at or above the ridge point (compute roof / bandwidth roof): FLOPs bound it;
- ``memory``: below the ridge point: its compulsory bytes bound it (each layer's at the bandwidth of its working set:
  the cache level it fits, from the roofs' triad sweep, never below the DRAM roof);
- ``overhead``: the measured time is more than 1 / OVERHEAD_EFFICIENCY times t_min (far below both roofs: dispatch,
  framework work, the profiler's own cost, caches re-read), or the kind has no compulsory work at all.
"""
from __future__ import annotations

from pathlib import Path

OVERHEAD_EFFICIENCY = 0.05  # below this share of its roof, a kind's time is not its FLOPs' nor its bytes'
JOINED_PHASES = ("forward", "backward")


def run_roofs(out: Path) -> dict | None:
    """The roofs the run recorded (``run_meta.json``'s ``roofs``); None when it recorded none."""
    from bench.results.read import Unreadable, read_meta
    try:
        r = read_meta(out).get("roofs")
    except Unreadable:
        return None
    return r if isinstance(r, dict) and r.get("libraries") else None


def dtype_bytes(precision: str) -> int:
    """Bytes per activation element: 4 in fp32, 2 under mixed precision (the convolutions' tensors)."""
    return 4 if precision == "fp32" else 2


def classify(t_compute_ms: float, t_memory_ms: float, ms: float) -> dict:
    """One (kind, phase)'s verdict from its time at the compute roof, at the memory roof and its measured time."""
    t_min = max(t_compute_ms, t_memory_ms)
    eff = t_min / ms if ms > 0 else None
    side = "none" if t_min == 0 else ("compute" if t_compute_ms >= t_memory_ms else "memory")
    bound = "overhead" if side == "none" or eff is None or eff < OVERHEAD_EFFICIENCY else side
    return {"t_min_ms": t_min, "efficiency": eff, "limiting_roof": side, "bound": bound}


def join(times: dict[tuple[str, str], float], work: dict[tuple[str, str], list[tuple[float, float]]],
         peak_gflops: float | None, roofs: dict | None) -> list[dict]:
    """One row per (kind, phase) that has measured time and analytic work: ``times`` {(kind, phase): ms per step},
    ``work`` {(kind, phase): [(FLOPs, bytes) of each layer]} per step; ``peak_gflops`` the compute roof, ``roofs``
    the run's. t_min = max(the kind's FLOPs / compute roof, the sum of its layers' bytes / each one's bandwidth roof);
    a layer's bandwidth roof is the one of its working set, its compulsory bytes (``bench.core.roofs.bandwidth_at``:
    cache levels from the triad sweep, never below DRAM's). Without roofs the figures are left empty."""
    from bench.core.roofs import bandwidth_at, memory_roof
    rows = []
    for (kind, phase), ms in sorted(times.items()):
        if phase not in JOINED_PHASES or (kind, phase) not in work:
            continue
        layers = work[(kind, phase)]
        flops, nbytes = sum(f for f, _ in layers), sum(b for _, b in layers)
        s = ms / 1e3
        r = {"layer_kind": kind, "phase": phase, "ms_per_step": ms, "gflop_per_step": flops / 1e9,
             "mbytes_per_step": nbytes / 1e6, "intensity_flop_per_byte": flops / nbytes if nbytes else None,
             "achieved_gflops": flops / 1e9 / s if s > 0 else None,
             "achieved_gbs": nbytes / 1e9 / s if s > 0 else None, "compute_roof_gflops": peak_gflops}
        if peak_gflops and memory_roof(roofs):
            tc = sum(f for f, _ in layers) / (peak_gflops * 1e6)
            tm = sum(b / (bandwidth_at(roofs, b) * 1e6) for _, b in layers if b)
            r["memory_roof_gbs"] = nbytes / (tm * 1e6) if tm else memory_roof(roofs)
            r.update(classify(tc, tm, ms))
        else:
            r["null_reason"] = "no roofs recorded for this run (python -m bench.peaks, then run again)"
        rows.append(r)
    return rows


def layer_lists(spec, batch: int, nbytes: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """{(kind, phase): [(FLOPs, bytes) of each layer of that kind]} of ``spec`` for ``batch`` (``bench.zoo.work``)."""
    from bench.zoo.work import layer_work
    out: dict[tuple[str, str], list[tuple[float, float]]] = {}
    if spec.family == "user":  # a user twin has no spec to walk: its layers' work is not modelled
        return out
    for la in layer_work(spec, batch, nbytes):
        for ph in JOINED_PHASES:
            out.setdefault((la.kind, ph), []).append((la.flops(ph), la.bytes(ph)))
    return out


def profile_times(rows) -> dict[tuple[str, str], float]:
    """{(kind, phase): ms per step} summed over a profile's layer rows (``bench.stacks.base.LayerTime``)."""
    out: dict[tuple[str, str], float] = {}
    for r in rows:
        out[(r.kind, r.phase)] = out.get((r.kind, r.phase), 0.0) + r.ms_per_step
    return out


def model_gflop(model: str, measurement: str, options: dict | None = None) -> float:
    """The model's analytic GFLOP per image (``bench.zoo.work``, every kind): forward for inference, forward and
    backward for a train step."""
    from bench.zoo import get_spec
    from bench.zoo.work import work_by_kind
    w = work_by_kind(get_spec(model, **(options or {})), 1)
    phases = ("forward",) if measurement == "infer" else JOINED_PHASES
    return sum(f for (_, ph), (f, _) in w.items() if ph in phases) / 1e9


def throughput_columns(model: str, measurement: str, images_per_s: float | None, backend: str | None,
                       precision: str, roofs: dict | None) -> dict:
    """A throughput row's ``achieved_gflops`` and ``roof_fraction`` (against the compute roof of its library and
    precision that the run recorded), with the roof used; a null reason where there is no roof."""
    from bench.core.roofs import compute_roof
    from bench.zoo import get_spec
    if not images_per_s:
        return {}
    if get_spec(model).family == "user":
        return {"null_reason": "a user twin: its analytic work (bench.zoo.work) is modelled for the zoo's specs only, "
                               "so achieved_gflops and roof_fraction are empty"}
    achieved = model_gflop(model, measurement) * images_per_s
    roof = compute_roof(roofs, backend, precision)
    out = {"achieved_gflops": achieved, "roof_gflops": roof, "roof_fraction": achieved / roof if roof else None}
    if roof is None:
        out["null_reason"] = (f"no {precision} compute roof of {backend} recorded for this run: roof_fraction empty "
                              "(python -m bench.peaks)")
    return out
