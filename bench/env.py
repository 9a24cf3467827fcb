"""Environment capture: the columns every result row carries, and ``run_meta.json``."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def framework_env(framework: str, device: str | None = None) -> dict:
    """device/framework/backend columns for a job in *this* process (imports the framework)."""
    if framework == "torch":
        import torch
        cuda = torch.cuda.is_available() and device != "cpu"
        return {"framework": "torch", "backend": "torch", "framework_version": torch.__version__,
                "backend_version": torch.__version__, "device": "cuda" if cuda else "cpu",
                "device_name": torch.cuda.get_device_name(0) if cuda else _cpu_name()}
    import keras
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf
        version, gpus = tf.__version__, tf.config.list_physical_devices("GPU")
    elif backend == "jax":
        import jax
        version, gpus = jax.__version__, [d for d in jax.devices() if d.platform == "gpu"]
    else:
        import torch
        version, gpus = torch.__version__, (["cuda"] if torch.cuda.is_available() else [])
    on_gpu = bool(gpus) and device != "cpu"
    return {"framework": "keras", "backend": backend, "framework_version": keras.__version__,
            "backend_version": version, "device": "cuda" if on_gpu else "cpu",
            "device_name": gpu_name() if on_gpu else _cpu_name()}


def gpu_name() -> str:
    info = nvml_info()
    return info.get("gpu_name") or "GPU"


def nvml_info() -> dict:
    """GPU name and driver through NVML; {} when there is no NVIDIA GPU or no pynvml."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        name = pynvml.nvmlDeviceGetName(h)
        driver = pynvml.nvmlSystemGetDriverVersion()
        dec = lambda s: s.decode() if isinstance(s, bytes) else s  # noqa: E731
        return {"gpu_name": dec(name), "gpu_driver": dec(driver), "gpu_count": pynvml.nvmlDeviceGetCount()}
    except Exception:
        return {}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip() or None
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
        "python": sys.version.split()[0], "platform": platform.platform(), "cpu": _cpu_name(),
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


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as JSON into ``path`` atomically.

    Raises:
        bench.writes.ResultsWriteError: disk full or not writable (no temporary file is left behind).
    """
    from bench.writes import write_text_atomic
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))
