"""The Environment section: where and with what the run ran."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.common import Section


def _roofs(run: dict) -> str:
    """The roofs the run recorded (python -m bench.peaks), or why there are none (older runs: not recorded)."""
    from bench.report.sections.roofline import roofs_line
    return roofs_line(run) or "not recorded (a run before python -m bench.peaks existed)"


def section_environment(run: dict, out: Path | None = None) -> Section:
    """Run id, suite, command, commit, device and versions (``out`` unused: it draws no figure)."""
    m = run["meta"]
    s = Section("Environment")
    v = m.get("versions", {})
    rows = [("run id", m.get("run_id")), ("suite", m.get("suite")), ("command", m.get("command")),
            ("git commit", f"{m.get('git_commit')}{' (dirty)' if m.get('git_dirty') else ''}"),
            ("device", m.get("gpu_name") or f"CPU: {m.get('cpu')} ({m.get('cpu_count')} threads)"),
            ("GPU driver / CUDA / cuDNN", f"{m.get('gpu_driver')} / {m.get('cuda')} / {m.get('cudnn')}"),
            ("python", m.get("python")), ("torch", v.get("torch")), ("keras", v.get("keras")),
            ("keras backends", ", ".join(m.get("keras_backends") or []) or m.get("keras_backend")),
            ("tensorflow", v.get("tensorflow")), ("jax", v.get("jax")), ("roofs", _roofs(run))]
    s.tables.append(("", pd.DataFrame(rows, columns=["", "value"])))
    if m.get("device") == "cpu":
        s.text.append("This run had no GPU: allocator peaks and NVML figures are empty, with the reason in each row.")
    return s
