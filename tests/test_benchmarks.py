"""pytest-benchmark: one train step and one inference batch per model x framework, grouped by model.

Run ``pytest --benchmark-only`` to time them (``--benchmark-json``, ``--benchmark-save``,
``--benchmark-compare`` work as usual; ``--bench-models``, ``--bench-batch-size``, ``--bench-precision``,
``--bench-frameworks``, ``--bench-rounds`` narrow the set). The Keras twins run on the backend of
``KERAS_BACKEND`` (one backend per pytest process: Keras picks it at import); the session's backend is in
every benchmark's name (``conftest.bench_name``) and ``extra_info['keras_backend_session']``, so one
session per backend saves JSONs that ``pytest-benchmark compare`` shows side by side (README). In an ordinary
``pytest`` run each body runs once, untimed, so a broken benchmark fails CI.

Every timed call ends with a device synchronisation (``StepRunner.sync``: torch.cuda.synchronize;
Keras steps return a host value), so the figure is the real step time. Model build, the first
(compiling) step and the warm-up rounds stay outside the timed rounds.
"""
import pytest

from bench.stacks import make_step


@pytest.fixture
def bench_settings(request):
    from conftest import _has_gpu
    gpu = _has_gpu()
    opt = request.config.getoption
    return {"gpu": gpu, "batch": opt("--bench-batch-size") or (128 if gpu else 8),
            "precision": opt("--bench-precision") or ("bf16" if gpu else "fp32"),
            "rounds": opt("--bench-rounds") or (40 if gpu else 5), "warmup": 10 if gpu else 2}


@pytest.mark.bench
def test_step(benchmark, bench_case, bench_settings):
    model, framework, measurement = bench_case
    s = bench_settings
    r = make_step(model, framework, measurement, s["batch"], s["precision"], device=None if s["gpu"] else "cpu")
    from conftest import bench_name, session_keras_backend

    from bench.core.hygiene import malloc_setting
    benchmark.group = model
    benchmark.name = bench_name(framework, measurement)

    def step():
        r.step()
        r.sync()

    step()  # first step: compilation / tracing / autotuning, outside the timed rounds
    from bench.stacks import get_stack
    mem = get_stack(framework, r.env["backend"]).memory()
    mem.reset_peak()
    benchmark.pedantic(step, rounds=s["rounds"], warmup_rounds=s["warmup"], iterations=1)
    peak, source = mem.peak_bytes() if r.env["device"] == "cuda" else (
        None, "no GPU: allocator peak not defined on the CPU")
    stats = getattr(benchmark, "stats", None)
    median = stats.stats.median if stats is not None else None
    benchmark.extra_info.update({
        **r.env, "keras_backend_session": session_keras_backend(), "model": model, "measurement": measurement,
        "precision": s["precision"], "batch_size": s["batch"],
        "cpu_malloc": malloc_setting()[0], "exec_mode": r.exec_mode, "params_trainable": r.params[0], "params_total": sum(r.params),
        "peak_mem_mib": None if peak is None else peak / 2**20, "peak_mem_source": source,
        "images_per_s": None if not median else s["batch"] / median})
    if stats is not None:
        assert median > 0
