"""Step timing: warm-up until stable, per-step samples, and pytest-benchmark-style summary statistics."""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable

from bench.core import phases

MIN_WARMUP = 10
# a throughput job times at least this long (and at least its steps): 10 samples of a 10 ms CPU step are 0.1 s, where
# a burst or a drift of the machine decides the median; pytest-benchmark, timeit and asv time for a minimum too
MIN_TIMED_S = 2.0
MAX_SAMPLES = 1000


def timed(step: Callable[[], None], sync: Callable[[], None]) -> float:
    """Seconds for one step; the device is synchronised before each clock read."""
    sync()
    t0 = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - t0


def warmup(step: Callable[[], None], sync: Callable[[], None], min_steps: int = MIN_WARMUP,
           max_steps: int = 100, window: int = 5, tol: float = 0.05) -> tuple[int, list[float], bool]:
    """Run untimed steps until the median of the last ``window`` steps moves less than ``tol``.

    Returns (steps run, their times, whether it converged: stopped because the step time was stable rather
    than at ``max_steps``). At least ``min_steps``, at most ``max_steps``.
    """
    times: list[float] = []
    prev = None
    while len(times) < max_steps:
        times.append(timed(step, sync))
        if len(times) >= max(min_steps, window) and len(times) % window == 0:
            med = statistics.median(times[-window:])
            if prev is not None and abs(med - prev) <= tol * prev:
                return len(times), times, True
            prev = med
    return len(times), times, False


def measure(runner, steps: int, max_warmup: int = 100, around_timed=None, min_time_s: float = 0.0,
            max_samples: int = MAX_SAMPLES) -> dict:
    """What the suites report for a ``bench.stacks.base.StepRunner``: first step, warm-up until stable, timed samples.

    A sample is ``runner.steps_per_sample`` steps (``runner.window(n)`` for a Keras train step, as
    ``fit`` runs them; otherwise one ``runner.step()``), the device synchronised before and after; its time
    divided by the steps is the sample's step time. At least ``steps`` samples, and more until they took
    ``min_time_s`` (at most ``max_samples``). Returns first_step_s, warmup_steps, warmup_converged, timed_steps,
    steps_per_sample and the step times in seconds (``times``). ``around_timed``: a context manager entered
    around the timed samples alone (``bench.measures.throughput``: machine load and GPU energy windows).
    """
    n = max(1, int(getattr(runner, "steps_per_sample", 1) or 1))
    window = getattr(runner, "window", None)
    sample = (lambda: window(n)) if window is not None and n > 1 else runner.step
    phases.enter("first_step")
    t0 = time.perf_counter()
    runner.sync()
    runner.step()
    runner.sync()
    first = time.perf_counter() - t0
    phases.enter("warmup")
    # both bounds in samples of n steps: at least MIN_WARMUP steps, at most max_warmup (rounded up to whole samples;
    # the cap was once max(MIN_WARMUP samples, ...): a Keras window of 4 warmed up 40 steps where max_warmup said 15)
    least = -(-MIN_WARMUP // n)
    n_warm, _, converged = warmup(sample, runner.sync, min_steps=least, max_steps=max(least, -(-max_warmup // n)))
    with around_timed if around_timed is not None else contextlib.nullcontext():  # e.g. the hygiene windows
        phases.enter("timed")
        times: list[float] = []
        spent = 0.0  # seconds the samples took, kept as they come (not re-summed between samples)
        while len(times) < steps or (spent < min_time_s and len(times) < max_samples):
            t = timed(sample, runner.sync)
            spent += t
            times.append(t / n)
        phases.enter(None)
    return {"first_step_s": first, "warmup_steps": n_warm * n + 1, "warmup_converged": converged,
            "timed_steps": len(times), "steps_per_sample": n, "times": times}


def summarize(times_s: list[float], batch_size: int) -> dict:
    """min/max/mean/std/median/IQR in ms, and images/s from the median step."""
    ms = sorted(t * 1e3 for t in times_s)
    if not ms:
        raise ValueError("no step times")
    q = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else [ms[0]] * 3
    med = statistics.median(ms)
    return {"step_ms_median": med, "step_ms_iqr": q[2] - q[0], "step_ms_mean": statistics.fmean(ms),
            "step_ms_std": statistics.stdev(ms) if len(ms) > 1 else 0.0, "step_ms_min": ms[0],
            "step_ms_max": ms[-1], "images_per_s": batch_size / (med / 1e3)}


def injected_slowdown(job_id: str, implementation: str) -> float:
    """Test hook: ``TWINBENCH_INJECT_SLOWDOWN="<target>:<factor>"`` (``;``-separated) slows the timed step of
    every job whose job_id contains ``target``, or whose implementation label (``torch eager``) is ``target``,
    by ``factor`` (1.2: 20% slower). 1.0 when none applies."""
    for part in filter(None, os.environ.get("TWINBENCH_INJECT_SLOWDOWN", "").split(";")):
        target, _, factor = part.rpartition(":")
        if target and (target == implementation or target in job_id):
            return float(factor)
    return 1.0


class Slowed:
    """A step runner whose step (and window of steps) takes ``factor`` times as long: the step runs, the
    device is synchronised, then the process sleeps (factor - 1) x the step's time, inside the timed region."""

    def __init__(self, runner, factor: float) -> None:
        self._runner, self._factor = runner, factor

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def _slowed(self, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        self._runner.sync()
        time.sleep((self._factor - 1) * (time.perf_counter() - t0))

    def step(self) -> None:
        self._slowed(self._runner.step)

    @property
    def window(self):
        inner = getattr(self._runner, "window", None)
        return None if inner is None else (lambda n: self._slowed(lambda: inner(n)))
