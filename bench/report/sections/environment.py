"""The Environment section: where and with what the run ran."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section


def _roofs(run: dict) -> str:
    """The roofs the run recorded (python -m bench.peaks), or why there are none (older runs: not recorded)."""
    from bench.report.sections.roofline import roofs_line
    return roofs_line(run) or "not recorded (a run before python -m bench.peaks existed)"


def gpu_stack(meta: dict) -> str:
    """The GPU driver / CUDA / cuDNN cell: each one known; "not found" for one that is not; "no GPU" on a machine
    without one (never "None / None / None"). CUDA alone on a CPU run is the version torch was built with."""
    vals = [meta.get(k) for k in ("gpu_driver", "cuda", "cudnn")]
    if meta.get("gpu_name") is None and meta.get("gpu_driver") is None:
        built = f" (torch built for CUDA {meta['cuda']})" if meta.get("cuda") else ""
        return f"no GPU{built}"
    return " / ".join(str(v) if v not in (None, "") else "not found" for v in vals)


def section_environment(run: dict, out: Path | None = None) -> Section:
    """Run id, suite, command, commit, device and versions (``out`` unused: it draws no figure)."""
    m = run["meta"]
    s = Section("Environment")
    v = m.get("versions", {})
    rows = [("run id", m.get("run_id")), ("suite", m.get("suite")), ("command", m.get("command")),
            ("git commit", f"{m.get('git_commit')}{' (dirty)' if m.get('git_dirty') else ''}"),
            ("device", m.get("gpu_name") or f"CPU: {m.get('cpu')} ({m.get('cpu_count')} threads)"),
            ("GPU driver / CUDA / cuDNN", gpu_stack(m)),
            ("python", m.get("python")), ("torch", v.get("torch")), ("keras", v.get("keras")),
            ("keras backends", ", ".join(m.get("keras_backends") or []) or m.get("keras_backend")),
            ("tensorflow", v.get("tensorflow")), ("jax", v.get("jax")), ("roofs", _roofs(run))]
    s.tables.append(("", pd.DataFrame(rows, columns=["", "value"])))
    if m.get("device") == "cpu":
        s.text.append("This run had no GPU: allocator peaks and NVML figures are empty, with the reason in each row.")
    return s
