"""Shared fixtures: CPU by default, real CIFAR-10 located or built once, benchmarks run once unless asked."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# No bench.run in a test measures this machine's roofs first (a run does when none are cached; CI's checkout has
# none): the runs stay as cheap as before. The test of that path (tests/test_run.py) unsets it.
os.environ.setdefault("TWINBENCH_NO_ROOFS", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_BUILD = ROOT.parent / "shared" / "data" / "cifar10" / "build.py"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # The ordinary run executes every benchmark body once (so a broken benchmark fails CI) without
    # timing it; `pytest --benchmark-only` (or --benchmark-enable) times them for real.
    if not (config.getoption("benchmark_only", False) or config.getoption("benchmark_enable", False)):
        config.option.benchmark_disable = True
        # Nothing untimed here depends on how fast XLA's CPU code runs, and much of it on how fast XLA compiles:
        # at LLVM's -O0 one Keras-on-JAX he_normal init of a new kernel shape compiles in 0.3 s instead of 2.3 s
        # (2 cores), the JAX parity of two twins takes 66 s instead of 188 s. Inherited by every child process
        # (TensorFlow's XLA reads the same flag); a timed session (--benchmark-only) keeps XLA's default.
        if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    else:  # timed: the allocator regime of the suite's jobs (bench.pipeline.worker; extra_info['cpu_malloc'])
        from bench.core.hygiene import pin_malloc
        pin_malloc()


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


def pytest_addoption(parser):
    g = parser.getgroup("twinbench", "TwinBench step benchmarks (tests/test_benchmarks.py)")
    g.addoption("--bench-models", default=None,
                help="comma-separated models or patterns (default: resnet20_v1,resnet56_v1,densenet_bc100_k12 "
                     "on a GPU; resnet20_v1,densenet_bc100_k12 on a CPU)")
    g.addoption("--bench-frameworks", default="torch,keras", help="torch,keras (default: both)")
    g.addoption("--bench-batch-size", type=int, default=None, help="batch size (default: 128 on a GPU, 8 on a CPU)")
    g.addoption("--bench-precision", default=None, help="fp32 | bf16 | fp16 (default: bf16 on a GPU, fp32 on a CPU)")
    g.addoption("--bench-rounds", type=int, default=None, help="timed rounds (default: 40 on a GPU, 5 on a CPU)")


def pytest_generate_tests(metafunc):
    if "bench_case" not in metafunc.fixturenames:
        return
    from bench.zoo import list_models
    gpu = _has_gpu()
    opt = metafunc.config.getoption
    default = "resnet20_v1,resnet56_v1,densenet_bc100_k12" if gpu else "resnet20_v1,densenet_bc100_k12"
    models = [m for p in (opt("--bench-models") or default).split(",") for m in (list_models(p.strip()) or [p.strip()])]
    frameworks = [f.strip() for f in opt("--bench-frameworks").split(",") if f.strip()]
    cases = [(m, fw, meas) for m in models for fw in frameworks for meas in ("train", "infer")]
    ids = [bench_name(fw, meas) for m, fw, meas in cases]
    ids = [f"{m}-{i}" for (m, _, _), i in zip(cases, ids)]
    metafunc.parametrize("bench_case", cases, ids=ids)


def session_keras_backend() -> str:
    """The Keras backend of this pytest process (Keras fixes it at import: one backend per session)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def bench_name(framework: str, measurement: str) -> str:
    """A benchmark's name: its implementation, what it measures and the session's Keras backend, e.g.
    ``keras_jax-train-session_jax`` or ``torch-train-session_jax``, so the saved JSONs of sessions on
    different backends stay apart side by side (``pytest-benchmark compare``)."""
    kb = session_keras_backend()
    impl = "torch" if framework == "torch" else f"keras_{kb}"
    return f"{impl}-{measurement}-session_{kb}"


def _has_gpu() -> bool:
    from bench.core.env import nvml_info
    return bool(nvml_info())


@pytest.fixture(autouse=True)
def _no_user_twins_leak():
    """A test that loads a twins file in this process (``bench.twins``' or ``bench.run``'s main called in-process
    sets ``$TWINBENCH_TWINS`` for the jobs it starts) leaves neither the variable nor the registered twins to the
    next test: one broken twins file would otherwise fail every later test that lists the models."""
    from bench.zoo import registry
    from bench.zoo.user import ENV, PAIRS_ENV
    saved = {k: os.environ.get(k) for k in (ENV, PAIRS_ENV)}
    names, loaded = set(registry._REGISTRY), set(registry._LOADED)  # a module's fixture may have loaded some before
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for name in set(registry._REGISTRY) - names:  # only the twins this test registered
        del registry._REGISTRY[name]
    registry._LOADED.intersection_update(loaded)
