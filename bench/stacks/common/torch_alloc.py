"""torch's allocator peak over one training step, on any device: shared by PyTorch and Keras on torch.

torch keeps no CPU allocator statistics (``torch.cuda.max_memory_allocated`` has no CPU counterpart), but its
profiler with ``profile_memory=True`` records every allocation and free of c10's allocators as a ``[memory]``
event with its signed byte count. Summed in time order from the start of a step, they give what the allocator
holds at each moment above what it held before the step; their maximum is the step's allocator peak (the same
quantity as ``max_memory_allocated() - memory_allocated()`` around a step on a GPU).

The profiler learns an allocation's size only when the allocation happens while it records: a free of a tensor
allocated before it started is not reported. So two steps run under it and the second is measured: what the
first leaves alive (gradients, momentum buffers) and the second frees is counted. Imports torch lazily.
"""
from __future__ import annotations

from collections.abc import Callable

MARK = "twinbench/measured_step"
METHOD = ("torch.profiler profile_memory=True: the [memory] events' running sum over the second of two profiled "
          "steps (bytes the {device} allocator held above its level before the step; runtime)")


def profiled_step_peak(step: Callable[[], object], device_type: str = "cpu") -> tuple[int, str]:
    """(bytes, method): the most the ``device_type`` allocator held during the second of two calls of ``step``
    above what it held before that call, from the profiler's memory events. ``step`` must finish its work on return
    (synchronise on a GPU)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device_type == "cuda" else [])
    with profile(activities=acts, profile_memory=True) as p:
        step()  # warm-up under the profiler: what it leaves alive is known when the measured step frees it
        with record_function(MARK):
            step()
    events = list(p.profiler.kineto_results.events())
    mark = next(e for e in events if e.name() == MARK)
    want = DeviceType.CUDA if device_type == "cuda" else DeviceType.CPU
    memory = sorted((e for e in events if e.name() == "[memory]" and e.device_type() == want
                     and mark.start_ns() <= e.start_ns() <= mark.end_ns()), key=lambda e: e.start_ns())
    return running_peak(e.nbytes() for e in memory), METHOD.format(device=device_type)


def running_peak(deltas) -> int:
    """The largest running sum of signed byte counts (allocations +, frees -), from 0: never below 0 (a step that
    only frees held nothing above its start)."""
    cur = peak = 0
    for d in deltas:
        cur += d
        peak = max(peak, cur)
    return peak
