"""Per-layer time of a torch-autograd training step: shared by PyTorch and Keras on the torch backend.

Both stacks run their layers as ``torch.nn.Module`` calls (Keras layers are modules on the torch backend)
and their backward as torch autograd, so one profiler attributes both the same way:

- **forward**: a global module pre/post hook opens a ``torch.profiler.record_function`` range around every
  named layer (``twinbench::layer::<phase>::<name>::<kind>``); a layer's time is its range's own time (the
  ranges of layers nested in it excluded). A container's own ops (a PyTorch DenseNet layer's functional ReLU,
  ``torch.cat``) are attributed to the container under the op's kind. Keras on torch also opens a layer's range at
  Keras' own ``Layer.__call__`` (``call_ranges``), so Keras' per-call Python is the layer's time.
- **backward**: the autograd engine records every node it evaluates
  (``autograd::engine::evaluate_function: XBackward0``) with the *sequence number* of the forward op that
  created it; each node's time goes to the layer whose range held that forward op.
- **recompute**: ``torch.utils.checkpoint`` re-runs a forward inside the backward pass. A layer range
  opened while autograd evaluates a node is ``recompute``; so is an op inside a backward node that records
  autograd history (a sequence number: backward formulas run without grad mode and record none), which
  is attributed to the layer containing the one whose backward triggered the recomputation (for the
  memory-efficient DenseNet: the dense layer whose concat + BN + ReLU is recomputed).
- **optimizer** / **loss**: the stack wraps them in ``twinbench::optimizer`` / ``twinbench::loss`` ranges.

Whatever no range claims (Python between layers, ``AccumulateGrad``, the step's glue) is the
``(unattributed)`` row: by construction the rows sum to the profiled step time, and coverage is the share
of it that a named layer, the loss or the optimizer holds. Nothing is spread or estimated. The trace is
torch.profiler's own Chrome trace (opens in Perfetto / chrome://tracing).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from bench.stacks.base import UNATTRIBUTED, LayerTime, StepProfile
from bench.stacks.common.autograd import _LAYER_KIND, _OP_KIND

# module / layer class -> kind (the memory counter's map, with the residual add as its own kind)
MODULE_KIND = {**_LAYER_KIND, "Add": "add"}
OP_KIND = {**_OP_KIND, "add": "add", "add_": "add", "mean": "pool", "adaptive_avg_pool2d": "pool",
           "native_batch_norm": "batchnorm", "_native_batch_norm_legit": "batchnorm", "mkldnn_convolution": "conv",
           "addmm": "linear", "mm": "linear", "clamp_min": "relu", "clamp_min_": "relu", "threshold": "relu"}
PREFIX = "twinbench::"
EVAL = "autograd::engine::evaluate_function: "
STEP, OPT, LOSS = PREFIX + "step", PREFIX + "optimizer", PREFIX + "loss"


def op_kind(name: str) -> str:
    """``aten::cat`` -> concat; an op no kind names -> other."""
    return OP_KIND.get(name.split("::")[-1].lstrip("_"), OP_KIND.get(name.split("::")[-1], "other"))


def module_kind(module) -> str | None:
    """The kind of a module's class (None: a container; its own ops get their op's kind)."""
    return MODULE_KIND.get(type(module).__name__)


@dataclass(frozen=True)
class Owner:
    """Who a piece of time belongs to. ``kind`` None: a container (its ops are classified one by one);
    ``parent``: the enclosing named layer (recompute of functional ops goes there)."""

    layer: str
    kind: str | None
    phase: str
    parent: str | None = None


NO_OWNER = Owner(UNATTRIBUTED, "other", "other")


class TorchLayerProfiler:
    """Profile steps of a torch-autograd model with its layers named.

    Args:
        names: ``id(module) -> (canonical layer name, kind or None for a container)``; modules not in it
            (the root model, helpers) open no range, their time goes to the enclosing layer.
        call_ranges: a context manager factory, entered with the profiler, that makes a framework's own layer
            call (Keras' ``Layer.__call__``) open and close the layer's range through :meth:`enter_layer` /
            :meth:`exit_layer`, so the framework's per-call work before torch's module hooks run is the layer's.
    """

    def __init__(self, names: dict[int, tuple[str, str | None]], call_ranges=None) -> None:
        self.names = names
        self.call_ranges = call_ranges
        self._stack: list = []
        self._parents: list[str] = []
        self.parent_of: dict[str, str | None] = {}
        self.prof = None

    # -- recording --------------------------------------------------------------------------------------
    def _pre(self, module, args) -> None:
        import torch
        info = self.names.get(id(module))
        if info is None:
            self._stack.append(None)
            return
        name, kind = info
        self.parent_of.setdefault(name, self._parents[-1] if self._parents else None)
        phase = "recompute" if torch._C._current_autograd_node() is not None else "forward"
        rf = torch.autograd.profiler.record_function(f"{PREFIX}layer::{phase}::{name}::{kind or ''}")
        rf.__enter__()
        self._stack.append(rf)
        self._parents.append(name)

    def _post(self, module, args, output) -> None:
        rf = self._stack.pop() if self._stack else None
        if rf is not None:
            self._parents.pop()
            rf.__exit__(None, None, None)

    enter_layer, exit_layer = _pre, _post  # for a framework's own call wrapper (``call_ranges``)

    def __enter__(self) -> TorchLayerProfiler:
        import torch
        from torch.nn.modules import module as M

        self._hooks = [M.register_module_forward_pre_hook(self._pre),
                       M.register_module_forward_hook(self._post, always_call=True)]
        self._calls = self.call_ranges(self) if self.call_ranges else None
        if self._calls is not None:
            self._calls.__enter__()
        self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
        self.prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.prof.__exit__(*exc)
        finally:
            for h in self._hooks:
                h.remove()
            if self._calls is not None:
                self._calls.__exit__(None, None, None)

    @staticmethod
    def step(fn) -> None:
        """Run one step inside its ``twinbench::step`` range."""
        import torch
        with torch.autograd.profiler.record_function(STEP):
            fn()

    # -- attribution ------------------------------------------------------------------------------------
    def analyse(self, skip: int = 1) -> tuple[list[LayerTime], float, float, int]:
        """(rows, profiled step ms, coverage, profiled steps) over the step ranges after the first ``skip``."""
        events = self.prof.events()
        steps = sorted((e for e in events if e.name == STEP), key=lambda e: e.time_range.start)[skip:]
        if not steps:
            raise RuntimeError("no profiled step range found in the torch profiler's events")
        acc: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
        seq: dict[tuple, Owner] = {}
        for st in steps:
            self._walk(st, None, acc, seq)
        total_us = sum(e.time_range.elapsed_us() for e in steps)
        n = len(steps)
        rows = [LayerTime(layer, kind, phase, us / n / 1e3, calls / n)
                for (layer, kind, phase), (us, calls) in sorted(acc.items(), key=lambda kv: -kv[1][0])]
        attributed = sum(r.ms_per_step for r in rows if r.layer != UNATTRIBUTED)
        step_ms = total_us / n / 1e3
        return rows, step_ms, attributed / step_ms if step_ms else None, n

    def _owner(self, ev, owner: Owner | None, seq: dict) -> tuple[Owner | None, bool]:
        """(the owner of ``ev``'s own time, whether ``ev`` opens a new attribution: counted as a call)."""
        name = ev.name
        if name.startswith(PREFIX + "layer::"):
            _, _, phase, layer, kind = name.split("::")
            same = owner is not None and (owner.layer, owner.phase) == (layer, phase)  # a framework call, then its module
            return Owner(layer, kind or None, phase, self.parent_of.get(layer)), not same
        if name.startswith(EVAL):
            o = seq.get((ev.fwd_thread, ev.sequence_nr))
            return (Owner(o.layer, o.kind, "backward", o.parent) if o else Owner(UNATTRIBUTED, "other", "backward")), o is not None
        if name == OPT:
            return Owner("(optimizer)", "other", "optimizer"), True
        if name == LOSS:
            return Owner("(loss)", "other", "forward"), True
        if owner is not None and owner.phase == "backward" and name.startswith("aten::") and ev.sequence_nr >= 0:
            # an op that records autograd history inside a backward node: checkpoint's recomputed forward
            layer = owner.parent or owner.layer
            return Owner(layer, op_kind(name), "recompute", self.parent_of.get(layer)), True
        if owner is not None and owner.kind is None and name.startswith("aten::"):
            return Owner(owner.layer, op_kind(name), owner.phase, owner.parent), True  # a container's own op
        return owner, False

    def _walk(self, ev, owner: Owner | None, acc: dict, seq: dict) -> None:
        own, new = self._owner(ev, owner, seq)
        if own is not None and own.phase == "forward" and ev.sequence_nr >= 0:
            seq.setdefault((ev.thread, ev.sequence_nr), own)
        children = ev.cpu_children
        self_us = ev.time_range.elapsed_us() - sum(c.time_range.elapsed_us() for c in children)
        o = own or NO_OWNER
        key = (o.layer, o.kind or "other", o.phase)
        acc[key][0] += max(self_us, 0.0)
        acc[key][1] += int(new)
        for c in sorted(children, key=lambda c: c.time_range.start):
            self._walk(c, own, acc, seq)


def profile_torch_steps(step, names: dict, steps: int, trace_path: str | None, sync=lambda: None,
                        warmup: int = 2, call_ranges=None) -> StepProfile:
    """Time ``steps`` unprofiled steps (median), then profile ``steps`` + 1 (the first discarded: the profiler's
    own warm-up) with every named layer's ranges; the trace goes to ``trace_path`` (gzipped Chrome JSON)."""
    import statistics
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    with TorchLayerProfiler(names, call_ranges) as p:
        for _ in range(steps + 1):
            p.step(step)
            sync()
    rows, step_ms, coverage, _ = p.analyse(skip=1)
    if trace_path:
        p.prof.export_chrome_trace(trace_path)
    return StepProfile(rows=rows, profiled_step_ms=step_ms, unprofiled_step_ms=statistics.median(times) * 1e3,
                       coverage=coverage, trace_path=trace_path,
                       source="torch.profiler record_function ranges per layer; backward by autograd sequence number")
