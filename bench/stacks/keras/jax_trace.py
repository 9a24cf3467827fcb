"""Keras on JAX: the step profile from JAX's profiler trace and the compiled step's HLO metadata.

The train step is Keras' own ``train_step``, jitted with its state donated as Keras' ``make_train_function``
does and compiled once; each step calls that executable with the training state kept in flight (as ``fit``
does), then waits for the loss, under ``jax.profiler.trace(..., create_perfetto_trace=True)``.
Each XLA op the step executes is one event of the
trace, named by its HLO instruction (``args.hlo_op``: ``fusion.12``, ``convolution.3``) in its module
(``args.hlo_module``: ``jit_train_step``). The instruction's ``metadata.op_name`` in that executable's HLO
(``.as_text()``) keeps the layer's name scope: ``jit(train_step)/jvp(stage1_block0_conv1)/conv_general_dilated``
forward, ``transpose(jvp(...))`` backward, ``sgd/`` the optimizer, ``jvp(compile_loss)`` the loss.

XLA fuses ops, across layers too: a fusion's time goes to the layer its own metadata names (the fusion's
root op); the ops inside it are read as well, and the time of every fusion whose ops name more than one
layer is reported as ``fused_share``. An instruction without metadata naming a layer (layout copies XLA
inserts, some fusions) is ``(unattributed)``, as is time outside XLA ops (dispatch, the host read-back).
XLA:CPU may run independent ops concurrently: time in ops that overlapped is reported in the null reason.
"""
from __future__ import annotations

import glob
import gzip
import json
import re
import shutil
import statistics
import tempfile
from collections import defaultdict

from bench.stacks.base import UNATTRIBUTED, LayerTime, StepProfile
from bench.stacks.keras.tf_trace import _union

STEP = "twinbench::step"
_INSTR = re.compile(r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=.*?(?:calls=%?([\w.\-]+))?.*?(?:op_name="([^"]*)")?[^"]*$')
_COMP = re.compile(r'^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')


def parse_hlo(text: str) -> tuple[dict[str, tuple[str | None, str | None]], dict[str, list[str]]]:
    """(instruction -> (op_name metadata, called computation), computation -> its instructions' op_names)."""
    instrs: dict[str, tuple[str | None, str | None]] = {}
    comps: dict[str, list[str]] = defaultdict(list)
    current = None
    for line in text.splitlines():
        if line.rstrip().endswith("{") and "=" not in line.split("(")[0]:
            m = _COMP.match(line)
            current = m.group(1) if m else None
            continue
        if line.strip() == "}":
            current = None
            continue
        m = _INSTR.match(line)
        if not m:
            continue
        name = m.group(1)
        calls = re.search(r"calls=%?([\w.\-]+)", line)
        op = re.search(r'op_name="([^"]*)"', line)
        instrs[name] = (op.group(1) if op else None, calls.group(1) if calls else None)
        if current and op:
            comps[current].append(op.group(1))
    return instrs, comps


def classify(op_name: str | None, kinds: dict) -> tuple[str, str, str] | None:
    """(layer, kind, phase) named by an HLO op_name, None when it names no layer, loss or optimizer."""
    from bench.stacks.keras.profile import OP_TYPE_KIND, scope_layer
    if not op_name:
        return None
    parts = [p for p in re.split(r"[/()]", op_name) if p]
    phase = "backward" if "transpose(" in op_name else "forward"
    if "rematted_computation" in op_name or "checkpoint" in parts and phase == "forward":
        phase = "recompute" if "transpose(" not in op_name else phase
    if "sgd" in parts or "optimizer" in parts:
        return "(optimizer)", "other", "optimizer"
    if "compile_loss" in parts:
        return "(loss)", "other", phase
    layer = scope_layer(parts, kinds)
    if layer is None:
        return None
    return layer, kinds[layer] or OP_TYPE_KIND.get(parts[-1], "other"), phase


def attribute(trace: dict, hlo: str, module: str, kinds: dict, skip: int = 1):
    """(rows, profiled step ms, coverage, fused share, overlap ms per step)."""
    instrs, comps = parse_hlo(hlo)
    ev = trace["traceEvents"] if isinstance(trace, dict) else trace
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in ev if e.get("ph") == "X" and e.get("name") == STEP)[skip:]
    if not steps:
        raise RuntimeError(f"no {STEP} range in the JAX trace")
    acc: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    spans, fused_us, op_us = [], 0.0, 0.0
    for e in ev:
        args = e.get("args") or {}
        if e.get("ph") != "X" or args.get("hlo_module") != module or not any(a <= e["ts"] < b for a, b in steps):
            continue
        own, calls = instrs.get(args.get("hlo_op"), (None, None))
        inner = {c[0] for c in (classify(o, kinds) for o in comps.get(calls, ())) if c}
        c = classify(own, kinds)
        if c is None and len(inner) == 1:
            c = next(iter(classify(o, kinds) for o in comps[calls] if classify(o, kinds)))
        if len(inner | ({c[0]} if c else set())) > 1:
            fused_us += e["dur"]
        spans.append((e["ts"], e["ts"] + e["dur"]))
        key = c or (UNATTRIBUTED, "other", "other")
        acc[key][0] += e["dur"]
        acc[key][1] += 1
        op_us += e["dur"]
    n = len(steps)
    total_us = sum(b - a for a, b in steps)
    overlap = op_us - _union(spans)
    unattr = acc.pop((UNATTRIBUTED, "other", "other"), [0.0, 0])[0]
    rows = [LayerTime(la, k, ph, us / n / 1e3, calls / n) for (la, k, ph), (us, calls) in acc.items()]
    attributed = sum(r.ms_per_step for r in rows)
    rows.append(LayerTime(UNATTRIBUTED, "other", "other", max(total_us / n / 1e3 - attributed, unattr / n / 1e3), 0))
    rows.sort(key=lambda r: -r.ms_per_step)
    return rows, total_us / n / 1e3, attributed / (total_us / n / 1e3), fused_us / total_us, overlap / n / 1e3


def profile_jax(stack, model: str, batch: int, precision: str, device, mode, steps: int, trace_dir, options):
    """``KerasJaxStack.profile`` (see ``bench.stacks.base.Stack.profile``)."""
    import jax

    from bench.stacks.keras.layers import keras_kind, layers_of
    from bench.stacks.keras.profile import build_compiled, time_unprofiled, trace_file
    env = stack.env(device)
    mode = stack.check_exec_mode(mode or stack.default_exec_mode(env["device"]))
    if mode != "jit":
        return StepProfile(env=env, exec_mode=mode, null_reason="keras/jax nojit: per-layer attribution is implemented "
                           "for the jitted step only")
    net, x, y = build_compiled(model, precision, batch, True, options)
    kinds = {la.name: keras_kind(la) for la in layers_of(net)}
    state = {"s": net._get_jax_state(trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
                                     metrics_variables=True, purge_model_variables=False)}
    # Keras' own train_step, jitted and donated as its make_train_function does, compiled once: the step profiled is
    # this executable (the state kept in flight between steps, as fit keeps it), so its HLO is the one traced
    compiled = jax.jit(net.train_step, donate_argnums=0).lower(state["s"], (x, y, None)).compile()
    hlo = compiled.as_text()

    def step():
        logs, state["s"] = compiled(state["s"], (x, y, None))
        jax.block_until_ready(logs["loss"])

    times = time_unprofiled(step, steps)
    logdir = tempfile.mkdtemp(prefix="twinbench-jaxprof-")
    try:
        with jax.profiler.trace(logdir, create_perfetto_trace=True):
            for _ in range(steps + 1):
                with jax.profiler.TraceAnnotation(STEP):
                    step()
        path = glob.glob(f"{logdir}/**/perfetto_trace.json.gz", recursive=True)[0]
        with gzip.open(path) as f:
            trace = json.load(f)
        rows, step_ms, coverage, fused, overlap_ms = attribute(trace, hlo, "jit_train_step", kinds)
        out = trace_file(trace_dir, model, "keras-jax", mode, batch, ".perfetto_trace.json.gz", options)
        if out:
            shutil.copy(path, out)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    reason = f"{overlap_ms:.3f} ms/step of XLA op time overlapped (concurrent ops)" if overlap_ms > 0.01 * step_ms else None
    return StepProfile(rows=rows, profiled_step_ms=step_ms, unprofiled_step_ms=statistics.median(times) * 1e3,
                       coverage=coverage, fused_share=fused, trace_path=out, env=env, exec_mode=mode, null_reason=reason,
                       source="jax.profiler trace (perfetto JSON), XLA ops by compiled-HLO op_name metadata; "
                              "transpose(...) = backward; a fusion goes to the layer its root op names")
