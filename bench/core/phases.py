"""Where a job's wall time goes: one clock per job, its phases entered in order.

The worker starts the clock at the parent's spawn time (``--spawned-at``, wall clock), then the measure and the
stacks name the phase they enter (``enter("build")``); a phase's time runs until the next one is entered. The
parent adds ``write`` (the row written and the process gone) and writes one ``jobs.csv`` row per job
(``bench.results.schema.KINDS["jobs"]``): wall time from spawn to row, and each phase.

Phases, in order: ``start`` (process start and imports, until the measure begins), ``data`` (the input: a
synthetic batch or CIFAR-10 loaded), ``build`` (the twin built, its optimizer made), ``first_step`` (the first
step: compile, trace, autotune: the "cold start / compile" figure), ``warmup`` (untimed steps until stable),
``timed`` (the timed work: samples, profiled steps, measured steps, training epochs), ``write`` (rows written and
the process gone). Time in none of them (hygiene windows, counts) is ``other``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

PHASES = ("start", "data", "build", "first_step", "warmup", "timed", "write")


class PhaseClock:
    """Seconds per phase of one job; ``enter`` closes the phase that was running."""

    def __init__(self, t0: float | None = None) -> None:
        self.t0 = time.time() if t0 is None else t0
        self.current: str | None = "start"
        self.since = self.t0
        self.spent: dict[str, float] = {}

    def enter(self, phase: str | None) -> None:
        """Close the running phase and start ``phase`` (None: time outside every phase, counted as other)."""
        if phase is not None and phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")
        now = time.time()
        key = self.current or "other"
        self.spent[key] = self.spent.get(key, 0.0) + (now - self.since)
        self.current, self.since = phase, now

    def reassign(self, seconds: float, src: str, dst: str) -> None:
        """Move ``seconds`` a closed phase held to another: a measure whose steps ran in processes of its own learns
        afterwards how much of the time it waited was their timed work."""
        moved = min(seconds, self.spent.get(src, 0.0))
        self.spent[src] = self.spent.get(src, 0.0) - moved
        self.spent[dst] = self.spent.get(dst, 0.0) + moved

    def close(self) -> dict[str, float]:
        """Stop the clock (the running phase closed); the seconds per phase so far."""
        self.enter(None)
        self.current = None
        return dict(self.spent)

    def reset(self, t0: float | None = None) -> None:
        """A new job in the same process (a reused worker): the clock starts again at ``t0``."""
        self.__init__(t0)


CLOCK = PhaseClock()


def enter(phase: str | None) -> None:
    """The running job enters ``phase`` (``bench.core.phases.PHASES``)."""
    CLOCK.enter(phase)


def dump(path: Path) -> None:
    """The clock's phases so far, and the wall time at which they end, as JSON at ``path`` (the parent reads it)."""
    spent = CLOCK.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"t0": CLOCK.t0, "t_end": time.time(), "phases": spent}))
    tmp.replace(path)


def path_for(out: Path, job_id: str) -> Path:
    """Where a job's worker leaves its phase times for the parent (``bench.pipeline.jobs.record_job``, which reads
    and removes it): the temporary folder, never the run's (a run folder holds results alone)."""
    import hashlib
    import tempfile
    key = hashlib.sha1(f"{Path(out).resolve()}\0{job_id}".encode()).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / "twinbench-phases" / f"{key}.json"


def load(path: Path) -> dict | None:
    """What :func:`dump` wrote (None: nothing, or unreadable: a worker that died first)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
