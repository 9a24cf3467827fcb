"""Shared fixtures: CPU by default, real CIFAR-10 located or built once, benchmarks run once unless asked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
SHARED_BUILD = ROOT.parent / "shared" / "data" / "cifar10" / "build.py"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # The ordinary run executes every benchmark body once (so a broken benchmark fails CI) without
    # timing it; `pytest --benchmark-only` (or --benchmark-enable) times them for real.
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory) -> Path:
    """Directory holding ``cifar-10-batches-py/``: $TWINBENCH_DATA_DIR, ./data, or built from ../shared."""
    from bench.data import find_cifar10
    found = find_cifar10(os.environ.get("TWINBENCH_DATA_DIR"))
    if found is not None:
        return found
    if not SHARED_BUILD.exists():
        pytest.skip("real CIFAR-10 not found: set TWINBENCH_DATA_DIR or run ../shared/data/cifar10/build.py data")
    target = ROOT / "data"
    subprocess.run([sys.executable, str(SHARED_BUILD), str(target)], check=True)
    return target
