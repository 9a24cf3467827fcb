"""Keras on TensorFlow: the step profile from TensorFlow's own profiler.

The train step is called as ``fit`` calls it (the throughput measure's Keras step, a window of one step and a
read-back), compiled as Keras compiles it without XLA (``jit_compile=False``: a ``tf.function`` graph),
under ``tf.profiler.experimental.start/stop``. The profile (an XSpace, ``*.xplane.pb``) is read with the
protobuf classes TensorFlow ships for it (``tensorflow.tsl.profiler.protobuf.xplane_pb2``: the maintained
schema, no hand-written reader), and converted to a Chrome trace by TensorFlow's own converter
(``_pywrap_profiler_plugin.xspace_to_tools_data(..., "trace_viewer@")``, what TensorBoard's profile plugin
runs) for Perfetto; the ``.xplane.pb`` itself opens in TensorBoard's profile plugin.

Every op event of the graph executor is named ``<name scope>/<op>:<type>``: Keras opens a scope per layer
(``resnet_v1_20_1/stage1_block0_conv1_1/convolution:Conv2D``); gradient ops sit under ``gradient_tape/``,
the optimizer's under ``sgd/``, the loss under ``compile_loss/``. An op's time goes to the innermost layer
its scope names. One kind of gradient op has no scope: the sum of a tensor's gradients when two layers consume
it (``AddN_<n>`` at the function's root: a residual block's input, feeding both its convolution and its shortcut
add; a DenseNet's concatenated features). Its time goes to the layer whose backward consumes the sum, read from
the executed function's graph (its ``FunctionDef``: the node's consumers, by name). The executor's own time
between ops, Python and the host read-back are ``(unattributed)``.
Inter-op parallelism is set to 1 for the profiled process (when TensorFlow is not yet initialised), so op
events tile the step instead of overlapping; time in ops that did overlap is reported in the null reason.
"""
from __future__ import annotations

import glob
import gzip
import shutil
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

from bench.stacks.base import UNATTRIBUTED, LayerTime, StepProfile

STEP = "twinbench::step"
EXECUTE = "EagerLocalExecute:"  # the eager runtime's event around a graph function's run: "EagerLocalExecute: <name>"


def serial_ops() -> str | None:
    """Inter-op parallelism 1 (op events tile the step); a reason when TensorFlow is already initialised."""
    import tensorflow as tf
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return None
    except RuntimeError as e:
        return f"inter-op parallelism not set to 1 ({str(e)[:80]}): ops may overlap"


def classify(name: str, op_type: str, kinds: dict) -> tuple[str, str, str] | None:
    """(layer, kind, phase) of a TF op event's name, None for an event that is not a graph op."""
    from bench.stacks.keras.profile import OP_TYPE_KIND, scope_layer
    parts = name.split(":")[0].split("/")
    phase = "forward"
    if parts[0] == "gradient_tape":
        phase, parts = "backward", parts[1:]
        if any("recompute" in p for p in parts) and not op_type.endswith(("Grad", "BackpropInput", "BackpropFilter")):
            phase = "recompute"
    head = parts[0].lower()
    if head.startswith("sgd") or head.startswith("optimizer"):
        return "(optimizer)", "other", "optimizer"
    if head.startswith("compile_loss"):
        return "(loss)", "other", phase
    layer = scope_layer(parts, kinds)
    if layer is None:
        return None
    return layer, kinds[layer] or OP_TYPE_KIND.get(op_type, "other"), phase


def _events(xplane: str, functions: set | None = None):
    """(python step windows [(start_ps, end_ps)], op events [(start_ps, dur_ps, name, type)]) of the host plane;
    the names of the graph functions the steps executed are added to ``functions``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    xs = xplane_pb2.XSpace()
    xs.ParseFromString(Path(xplane).read_bytes())
    steps, ops = [], []
    for plane in xs.planes:
        if not plane.name.startswith("/host"):
            continue
        md = plane.event_metadata
        for line in plane.lines:
            base = line.timestamp_ns * 1000
            for e in line.events:
                m = md[e.metadata_id]
                start = base + e.offset_ps
                if m.name == STEP:
                    steps.append((start, start + e.duration_ps))
                elif functions is not None and m.name.startswith(EXECUTE):
                    functions.add(m.name[len(EXECUTE):].strip())
                elif ":" in m.name and m.display_name:
                    ops.append((start, e.duration_ps, m.name, m.display_name))
    return sorted(steps), ops


def grad_sum_layers(function_defs, kinds: dict) -> dict[str, tuple[str, str]]:
    """Root-level gradient sums (``AddN`` nodes outside any scope) -> (layer, kind) of the one layer whose backward
    consumes the sum, from the functions' graphs; a sum consumed by several layers, or by none that is known, is
    left out (its time stays unattributed)."""
    from bench.stacks.keras.profile import OP_TYPE_KIND
    consumers: dict[str, set] = defaultdict(set)
    nodes = {}
    for f in function_defs:
        for node in f.node_def:
            nodes[node.name] = node
            for inp in node.input:
                if not inp.startswith("^"):
                    consumers[inp.split(":")[0]].add(node.name)

    def layers(name: str, seen: set) -> set:
        out = set()
        for c in consumers.get(name, ()):
            cls = classify(c + ":", nodes[c].op, kinds)
            if cls is not None and cls[0] in kinds:
                out.add(cls[0])
            elif "/" not in c and c not in seen:  # another root-level node (a sum of sums): follow it
                out |= layers(c, seen | {c})
            else:
                out.add(None)
        return out

    found = {}
    for name, node in nodes.items():
        if node.op == "AddN" and "/" not in name:
            ls = layers(name, {name})
            if len(ls) == 1 and None not in ls:
                layer = ls.pop()
                found[name] = (layer, kinds[layer] or OP_TYPE_KIND["AddN"])
    return found


def _function_defs(names) -> list:
    """The FunctionDefs of the graph functions named (those the eager context still holds)."""
    from tensorflow.python.eager import context
    out = []
    for n in sorted(names):
        try:
            out.append(context.context().get_function_def(n))
        except Exception:  # noqa: BLE001 - a function no longer registered: its sums stay unattributed
            pass
    return out


def attribute(xplane: str, kinds: dict, skip: int = 1, function_defs=None):
    """(rows, profiled step ms, coverage, overlap ms per step) from one XSpace file. ``function_defs``: the
    executed functions' graphs (None: looked up in this process's eager context by the names in the trace)."""
    functions: set = set()
    steps, ops = _events(xplane, functions)
    sums = grad_sum_layers(_function_defs(functions) if function_defs is None else function_defs, kinds)
    steps = steps[skip:]
    if not steps:
        raise RuntimeError(f"no {STEP} range in {xplane}")
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0])
    spans = []
    for start, dur, name, op_type in ops:
        if not any(a <= start < b for a, b in steps):
            continue
        c = classify(name, op_type, kinds)
        if c is None and name.split(":")[0] in sums:
            c = (*sums[name.split(":")[0]], "backward")
        if c is None:
            continue
        acc[c][0] += dur
        acc[c][1] += 1
        spans.append((start, start + dur))
    n = len(steps)
    total_ps = sum(b - a for a, b in steps)
    op_ps = sum(v[0] for v in acc.values())
    overlap_ps = op_ps - _union(spans)
    rows = [LayerTime(layer, kind, phase, ps / n / 1e9, calls / n) for (layer, kind, phase), (ps, calls) in acc.items()]
    rows.append(LayerTime(UNATTRIBUTED, "other", "other", max(total_ps - op_ps, 0) / n / 1e9, 0))
    rows.sort(key=lambda r: -r.ms_per_step)
    return rows, total_ps / n / 1e9, op_ps / total_ps, overlap_ps / n / 1e9


def _union(spans) -> int:
    total, end = 0, None
    for a, b in sorted(spans):
        if end is None or a >= end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


def profile_tf(stack, model: str, batch: int, precision: str, device, mode, steps: int, trace_dir, options):
    """``KerasTensorFlowStack.profile`` (see ``bench.stacks.base.Stack.profile``)."""
    import tensorflow as tf

    from bench.stacks.keras.layers import keras_kind, layers_of
    from bench.stacks.keras.profile import build_compiled, fit_step, time_unprofiled, trace_file
    serial = serial_ops()
    env = stack.env(device)
    mode = stack.check_exec_mode(mode or stack.default_exec_mode(env["device"]))
    if mode == "jit":
        return StepProfile(env=env, exec_mode=mode, null_reason="keras/tensorflow jit (XLA): ops fused across layers; "
                           "per-layer attribution is implemented for nojit (graph mode) only")
    net, x, y = build_compiled(model, precision, batch, False, options)
    kinds = {la.name: keras_kind(la) for la in layers_of(net)}
    step = fit_step(stack, net, x, y)  # ends with a host read-back: synchronous
    times = time_unprofiled(step, steps)
    logdir = tempfile.mkdtemp(prefix="twinbench-tfprof-")
    try:
        tf.profiler.experimental.start(logdir)
        try:
            for i in range(steps + 1):
                with tf.profiler.experimental.Trace(STEP, step_num=i, _r=1):
                    step()
        finally:
            tf.profiler.experimental.stop()
        xplane = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
        rows, step_ms, coverage, overlap_ms = attribute(xplane, kinds)
        trace = trace_file(trace_dir, model, "keras-tensorflow", mode, batch, ".trace.json.gz", options)
        if trace:
            _keep(xplane, trace)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    reasons = [r for r in (serial, f"{overlap_ms:.3f} ms/step of op time overlapped (concurrent ops)"
                           if overlap_ms > 0.01 * step_ms else None) if r]
    return StepProfile(rows=rows, profiled_step_ms=step_ms, unprofiled_step_ms=statistics.median(times) * 1e3,
                       coverage=coverage, trace_path=trace, env=env, exec_mode=mode, null_reason="; ".join(reasons) or None,
                       source="tf.profiler XSpace (xplane_pb2), ops by Keras name scope; gradient_tape/ = backward")


def _keep(xplane: str, trace: str) -> None:
    """The XSpace (TensorBoard's profile plugin) and its Chrome trace (Perfetto) beside each other."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    shutil.copy(xplane, trace.removesuffix(".trace.json.gz") + ".xplane.pb")
    data, ok = plugin.xspace_to_tools_data([xplane], "trace_viewer@", {})
    if ok:
        with gzip.open(trace, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
