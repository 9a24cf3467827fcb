"""The machine: CPU and GPU names, NVML, git state and library versions (``run_meta.json``'s provenance).

A row's framework/backend/device columns come from its stack (``Stack.env``)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.core.nvml import close, open_device


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_available() -> bool:
    """An NVIDIA GPU is visible here (NVML)."""
    return bool(nvml_info())


def gpu_name() -> str:
    info = nvml_info()
    return info.get("gpu_name") or "GPU"


def nvml_info() -> dict:
    """GPU name and driver through NVML; {} when there is no NVIDIA GPU or no pynvml."""
    nv, h, _ = open_device(0)
    if nv is None:
        return {}
    try:
        dec = lambda s: s.decode() if isinstance(s, bytes) else s  # noqa: E731
        return {"gpu_name": dec(nv.nvmlDeviceGetName(h)), "gpu_driver": dec(nv.nvmlSystemGetDriverVersion()),
                "gpu_count": nv.nvmlDeviceGetCount()}
    except Exception:
        return {}
    finally:
        close(nv)


def machine_of(meta: dict) -> str:
    """The machine a run ran on: host (or platform), CPU x cores, GPU (the key history and the roofs cache use)."""
    host = meta.get("hostname") or meta.get("platform") or "unknown host"
    gpu = f", {meta['gpu_name']}" if meta.get("gpu_name") else ""
    return f"{host} ({meta.get('cpu') or '?'} x{meta.get('cpu_count') or '?'}{gpu})"


def this_machine() -> str:
    """:func:`machine_of` this machine, as a run here would record it."""
    return machine_of({"hostname": platform.node(), "platform": platform.platform(), "cpu": cpu_name(),
                       "cpu_count": os.cpu_count(), **nvml_info()})


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(mod: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(mod)
    except PackageNotFoundError:
        return None


def run_meta(argv: list[str], suite: str, extra: dict | None = None) -> dict:
    """Provenance of a run (no framework import: versions come from package metadata)."""
    status = _git("status", "--porcelain")
    meta = {
        "git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
        "command": " ".join([Path(sys.executable).name, "-m", "bench.run", *argv]), "suite": suite,
        "python": sys.version.split()[0], "platform": platform.platform(), "hostname": platform.node(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "versions": {p: _version(p) for p in ("torch", "keras", "tensorflow", "jax", "jaxlib", "numpy",
                                               "pandas", "nvidia-ml-py", "twinbench")},
        **nvml_info(),
    }
    meta.update(_cuda_versions())
    meta.update(extra or {})
    return meta


def _cuda_versions() -> dict:
    """CUDA / cuDNN as torch was built with them, read in a short subprocess (keeps this one clean)."""
    code = ("import json,torch;print(json.dumps({'cuda': torch.version.cuda, 'cudnn': "
            "torch.backends.cudnn.version() if torch.cuda.is_available() else None, "
            "'cuda_available': torch.cuda.is_available()}))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except Exception:
        return {"cuda": None, "cudnn": None, "cuda_available": None}
