"""The precondition pass of ``bench.run``, once before any job starts, and the exit-status contract.

A suite can run for hours; what can be known to fail is checked first, in the parent process and
without importing any framework: the GPU when a job runs on ``cuda``, the packages of the frameworks
and Keras backends asked for (``importlib.util.find_spec``), the results (and reports) directory
writable with room for the run's rows, checkpoints and logs, and the CIFAR-10 files when a job reads
real data (training, ``input=real`` throughput). Each failure is one sentence naming the thing and
the fix; ``bench.run`` prints them all and exits with :data:`EXIT_BAD_INPUT`, before any job row.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from bench.core.job import Job
from bench.core.stack_registry import FRAMEWORK_LABELS, PACKAGE_EXTRAS, stacks_of

EXIT_OK = 0  # every job ended ok (an out-of-memory batch of a memory sweep is a result, as is a skipped one)
EXIT_JOBS_FAILED = 1  # some job ended in error or timeout: its row says why; --resume reruns it
EXIT_BAD_INPUT = 2  # bad input or a failed precondition: nothing ran
EXIT_WRITE_FAILED = 3  # results could not be written (disk full, no permission): free space, then --resume
EXIT_REGRESSION = 4  # bench.report --fail-on-regression / bench.history --fail-on-change found a regression (never bench.run)
# 130 (128 + SIGINT) / 143 (128 + SIGTERM): interrupted; finished rows are kept, --resume goes on

EXIT_STATUS_HELP = """exit status:
  0    every job ended ok (an out-of-memory batch in a memory sweep is a result, not a failure)
  1    some job ended in error or timeout (listed in the summary; --resume RUN_ID runs them again)
  2    bad input or a failed precondition (GPU, packages, results directory, CIFAR-10 files): nothing ran
  3    results could not be written (disk full, no permission): free space, then --resume RUN_ID
  4    never from bench.run: python -m bench.report --compare BASE --fail-on-regression PCT found an
       implementation slower (a significant test) or heavier in memory than in BASE by more than PCT percent,
       or python -m bench.history --fail-on-change PCT a change point beyond PCT; each is listed
  130  interrupted by Ctrl-C (143: by SIGTERM); finished rows are kept, --resume RUN_ID goes on"""

# generous sizes on disk, to refuse a run that cannot fit before it starts (measured rows are ~1-3 KiB)
ROW_BYTES = {"throughput": 16 << 10, "memory": 8 << 10, "epochs": 4 << 10, "scaling": 4 << 10,
             "profile": 24 << 20}  # a profile job: ~1 KiB per layer row plus its trace (a few MiB gzipped)
NVML_BYTES_PER_MEMORY_JOB = 512 << 10  # NVML samples at >= 20 Hz, ~300 bytes each (GPU only)
LOG_BYTES_PER_JOB = 256 << 10
EPOCHS_PER_JOB = 300  # more than any recipe (paper: 164 epochs)
CHECKPOINT_PARAMS_DEFAULT = 2e6  # when the registry has no published count
REPORT_BYTES = 32 << 20  # figures (PNG + SVG) and pages

def needs_real_data(job: Job) -> bool:
    """Training reads CIFAR-10; so does the throughput of the real input pipeline."""
    return job.kind == "epochs" or (job.kind == "throughput" and job.input == "real")


def missing_packages(frameworks: Iterable[str], keras_backends: Iterable[str]) -> list[str]:
    """One sentence per package that the frameworks / Keras backends asked for need and that is not installed.

    Args:
        frameworks: torch, keras.
        keras_backends: tensorflow, jax, torch (the backends of the Keras jobs; a list: a run may hold several).
    """
    wanted: dict[str, tuple[str, str]] = {}  # package -> (who needs it, the flag that leaves them out)
    for fw in sorted(set(frameworks)):
        mine = stacks_of(fw)
        who = f"the {FRAMEWORK_LABELS.get(fw, fw)} jobs"
        wanted.setdefault(mine[0].packages[0], (who, "--frameworks"))
        for s in mine if len(mine) == 1 else [s for s in mine if s.backend in set(keras_backends)]:
            for pkg in s.packages[1:]:
                wanted.setdefault(pkg, (f"{who} on the {s.backend} backend", "--keras-backend"))
    return [f"{who} need the {pkg} package, which is not installed here: pip install -e '.[{PACKAGE_EXTRAS[pkg]}]' "
            f"(or leave them out with {flag})." for pkg, (who, flag) in wanted.items() if importlib.util.find_spec(pkg) is None]


def expected_bytes(jobs: list[Job], report: bool = True) -> int:
    """A generous estimate of what the jobs write: rows, NVML samples, logs, checkpoints, the report."""
    from bench.zoo import get_entry
    total = REPORT_BYTES if report else 0
    largest_checkpoint = 0
    for j in jobs:
        total += LOG_BYTES_PER_JOB
        if j.kind == "epochs":
            total += EPOCHS_PER_JOB * ROW_BYTES["epochs"]
            try:
                params = get_entry(j.model).paper_params_value or CHECKPOINT_PARAMS_DEFAULT
            except Exception:
                params = CHECKPOINT_PARAMS_DEFAULT
            checkpoint = int(params * 4 * 3)  # fp32 weights + up to 2 optimizer slots, kept per training
            total += checkpoint
            largest_checkpoint = max(largest_checkpoint, checkpoint)  # + its temporary copy while replaced
        else:
            total += ROW_BYTES[j.kind]
            if j.kind == "memory" and j.device == "cuda":
                total += NVML_BYTES_PER_MEMORY_JOB
    return total + largest_checkpoint


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_problem(path: Path, what: str, option: str) -> str | None:
    """None when ``path`` (a directory, created later if absent) can be written, else the sentence saying why.

    Args:
        path: the directory.
        what: its name for the user ("the results directory").
        option: the command-line option that chooses it ("--out").
    """
    base = _existing_ancestor(Path(path))
    if not base.is_dir():
        return f"{what} {path} cannot be created: {base} is a file, not a directory; choose another {option}."
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".twinbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return (f"{what} {path} is not writable ({e.strerror or e} in {base}): fix its permissions or choose "
                f"another {option}.")
    return None


def space_problem(path: Path, need: int, n_jobs: int) -> str | None:
    """None when the disk holding the results directory ``path`` has ``need`` bytes free, else the sentence."""
    base = _existing_ancestor(Path(path))
    free = shutil.disk_usage(base).free
    if free >= need:
        return None
    return (f"the results directory {path} has {free / 2**20:.1f} MiB free on its disk and this run needs about "
            f"{need / 2**20:.1f} MiB ({n_jobs} jobs: rows, logs, checkpoints, report): free space or choose another --results.")


def data_problem(data_dir: str | None) -> str | None:
    """None when CIFAR-10 is present and well-formed (downloaded once here when absent), else the sentence."""
    from bench.data import DataError, check_cifar10
    try:
        check_cifar10(data_dir)
    except DataError as e:
        return str(e)
    except OSError as e:  # anything the loader did not foresee still names the folder, never a traceback
        return (f"CIFAR-10 could not be made ready in {data_dir or 'the default data folder'} ({e.strerror or e}): "
                "give --data-dir a folder that holds cifar-10-batches-py/ or that can be written")
    return None


def problems(jobs: list[Job], out: Path, data_dir: str | None, reports: Path | None = None,
             gpu_visible: Callable[[], bool] | None = None, here: bool = True, dry_run: bool = False) -> list[str]:
    """Every failed precondition of running ``jobs`` into ``out``, one sentence each (empty: go).

    Args:
        jobs: the jobs still to run.
        out: the run's results directory (created later if absent).
        data_dir: ``--data-dir`` (None: the default places, see ``bench.data``).
        reports: the reports directory, when a report will be rendered.
        gpu_visible: returns whether an NVIDIA GPU is visible (default: NVML, ``bench.run.gpu_available``).
        here: the jobs run on this machine (False on a Ray cluster: the nodes' packages and data are
            theirs, and each node prepares CIFAR-10 before its jobs).
        dry_run: ``--dry-run``: the same checks, none of which costs work; CIFAR-10 absent is no problem (the
            real run downloads it, a dry run does not), present but damaged is the real run's problem.
    """
    if not jobs:
        return []
    found: list[str] = []
    if any(j.device == "cuda" for j in jobs):
        if gpu_visible is None:
            from bench.core.env import gpu_available as gpu_visible
        if not gpu_visible():
            found.append("this run's jobs run on the GPU (--device cuda, or a resumed GPU run) but no NVIDIA GPU is "
                         "visible (NVML found none): run them on a GPU machine, or start a new run with --device cpu.")
    found += [] if not here else missing_packages({j.framework for j in jobs}, {j.keras_backend for j in jobs if j.keras_backend})
    out_problem = writable_problem(out, "the results directory", "--results")
    found += [out_problem] if out_problem else []
    if reports is not None:
        p = writable_problem(reports, "the reports directory", "--reports")
        found += [p] if p else []
    if out_problem is None:
        p = space_problem(out, expected_bytes(jobs, report=reports is not None), len(jobs))
        found += [p] if p else []
    scaling = [j for j in jobs if j.replicas]
    if scaling:  # more replicas than devices, a stack without a data-parallel path: before any job
        from bench.measures.scaling import check as dp_check
        from bench.measures.scaling import dp_stack
        counts = sorted({j.replicas for j in scaling}) if here else [1]  # a Ray node's devices are the node's
        p = dp_check(list(dict.fromkeys(dp_stack(j) for j in scaling)), counts, scaling[0].device)
        found += [p] if p else []
    if here and any(needs_real_data(j) for j in jobs) and not (dry_run and _absent(data_dir)):
        p = data_problem(data_dir)
        found += [p] if p else []
    return found


def _absent(data_dir: str | None) -> bool:
    from bench.data import find_cifar10
    if find_cifar10(data_dir) is None:
        print(f"note: CIFAR-10 is not in {data_dir or 'the default data folders'}: the real run downloads it "
              "(a dry run does not)", file=sys.stderr)
        return True
    return False


def check(jobs: list[Job], out: Path, data_dir: str | None, reports: Path | None = None, file=None,
          gpu_visible: Callable[[], bool] | None = None, here: bool = True, dry_run: bool = False) -> int:
    """``bench.run``'s precondition pass: prints each problem as ``error: ...``; returns the exit status
    (:data:`EXIT_OK` to go on, :data:`EXIT_BAD_INPUT` when anything failed). ``--dry-run`` runs it too, and
    refuses what the real run would refuse, with the same sentences and status."""
    found = problems(jobs, out, data_dir, reports, gpu_visible, here, dry_run)
    file = file or sys.stderr
    for p in found:
        print(f"error: {p}", file=file)
    return EXIT_BAD_INPUT if found else EXIT_OK


def exit_status(counts: dict[str, int]) -> int:
    """The run's exit status from its jobs' statuses (ok, oom, skipped: results; error, timeout: failures)."""
    return EXIT_JOBS_FAILED if counts.get("error", 0) + counts.get("timeout", 0) else EXIT_OK


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in ``run_dir`` (with ``--out`` when not the default results/)."""
    default = Path(__file__).resolve().parents[2] / "results"
    out = "" if Path(run_dir).parent.resolve() == default else f" --out {Path(run_dir).parent}"
    return f"python -m bench.run --resume {Path(run_dir).name}{out}"


def write_failed(e: BaseException, file=None) -> int:
    """Say that a result could not be written and how to go on; returns :data:`EXIT_WRITE_FAILED`."""
    try:  # the suite's progress bar ends above the message, not below it
        from tqdm import tqdm
        for bar in list(getattr(tqdm, "_instances", ())):
            bar.close()
    except ImportError:
        pass
    run_dir = getattr(e, "run_dir", None)
    then = f"then continue with: {resume_command(run_dir)}" if run_dir else "then start the run again"
    print(f"\nerror: {e}; the suite stopped and every CSV is intact. Free space (or fix permissions), {then}",
          file=file or sys.stderr)
    return EXIT_WRITE_FAILED
