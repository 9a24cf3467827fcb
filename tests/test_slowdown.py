"""TWINBENCH_INJECT_SLOWDOWN: the test hook that slows one implementation's timed step."""
import csv

import pytest

from bench.measures import timing
from bench.measures.timing import Slowed, injected_slowdown, measure


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.sleeps = []

    def perf_counter(self):
        return self.t

    def sleep(self, s):
        self.sleeps.append(s)
        self.t += s


class FakeRunner:
    steps_per_sample = 1

    def __init__(self, clock, ms=10.0):
        self.clock, self.ms = clock, ms

    def step(self):
        self.clock.t += self.ms / 1e3

    def sync(self):
        pass


def test_injected_slowdown_targets_by_job_id_or_implementation(monkeypatch):
    monkeypatch.setenv("TWINBENCH_INJECT_SLOWDOWN", "plain20:1.5;keras/jax jit:1.2")
    assert injected_slowdown("throughput/plain20/torch/fp32/b2/infer/default/synthetic", "torch eager") == 1.5
    assert injected_slowdown("throughput/resnet20_v1/keras_jax/fp32/b2/infer/jit/synthetic", "keras/jax jit") == 1.2
    assert injected_slowdown("throughput/resnet20_v1/torch/fp32/b2/infer/default/synthetic", "torch eager") == 1.0
    monkeypatch.delenv("TWINBENCH_INJECT_SLOWDOWN")
    assert injected_slowdown("throughput/plain20", "torch eager") == 1.0


def test_slowed_step_takes_factor_times_as_long_inside_the_timed_region(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    monkeypatch.setattr(timing.time, "sleep", clock.sleep)
    plain = measure(FakeRunner(clock), steps=5, max_warmup=10)
    slowed = measure(Slowed(FakeRunner(clock), 1.2), steps=5, max_warmup=10)
    assert plain["times"] == pytest.approx([0.010] * 5)
    assert slowed["times"] == pytest.approx([0.012] * 5)  # 20% slower, every timed step
    assert len(clock.sleeps) == slowed["warmup_steps"] + 5  # first step, warm-up and timed steps: all slowed


class WindowRunner(FakeRunner):
    """A Keras-like runner: each timed sample is a window of 4 steps."""
    steps_per_sample = 4

    def __init__(self, clock, ms=10.0, speedup=0.0):
        super().__init__(clock, ms)
        self.speedup, self.steps = speedup, 0

    def step(self):
        self.steps += 1
        self.clock.t += self.ms / 1e3 * (1 - self.speedup) ** self.steps  # never settles: runs to the cap

    def window(self, n):
        for _ in range(n):
            self.step()


@pytest.mark.parametrize("max_warmup", [15, 40, 100])
def test_warm_up_is_capped_in_steps_whatever_the_window(monkeypatch, max_warmup):
    """``max_warmup`` caps warm-up *steps*: a window of 4 steps per sample warms up as many steps as a runner of one
    step per sample (rounded up to whole windows), not 4x as many (it once ran 40 steps where smoke said 15)."""
    clock = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    one, four = FakeRunner(clock), WindowRunner(clock, speedup=0.1)
    one.step = WindowRunner(clock, speedup=0.1).step  # the same unsettled step time, one step per sample
    m1, m4 = measure(one, steps=5, max_warmup=max_warmup), measure(four, steps=5, max_warmup=max_warmup)
    assert not m1["warmup_converged"] and not m4["warmup_converged"]  # both ran to the cap
    assert m1["warmup_steps"] == max_warmup + 1  # the first step, then the cap
    assert max_warmup + 1 <= m4["warmup_steps"] <= max_warmup + 4  # the cap, to a whole window


@pytest.mark.slow
def test_a_real_job_with_the_hook_is_slowed_and_its_neighbour_is_not(tmp_path, monkeypatch):
    """Two real (tiny) CPU jobs, the hook naming one: only its steps sleep, each by 20% of the step's own time."""
    from bench.core.job import Job
    from bench.measures.throughput import run_throughput
    sleeps = []
    real_sleep = timing.time.sleep
    monkeypatch.setattr(timing.time, "sleep", lambda s: (sleeps.append(s), real_sleep(s)))
    monkeypatch.setenv("TWINBENCH_INJECT_SLOWDOWN", "plain20:1.2")
    rows = {}
    for model in ("resnet20_v1", "plain20"):
        job = Job("throughput", model, "torch", None, "fp32", 2, "infer", steps=5, max_warmup=10, device="cpu")
        n = len(sleeps)
        run_throughput(job, tmp_path, job.base_row("r"), None)
        rows[model] = (list(csv.DictReader(open(tmp_path / "throughput.csv")))[-1], sleeps[n:])
    row, slept = rows["plain20"]
    assert len(slept) == int(row["warmup_steps"]) + int(row["timed_steps"])
    timed = [float(t) / 1e3 for t in row["step_times_ms"].split()]
    assert len(timed) >= 5 and all(t >= 6 * s for t, s in zip(timed, slept[-len(timed):]))  # the sleep is inside the timing
    assert rows["resnet20_v1"][1] == []  # the neighbour ran untouched
