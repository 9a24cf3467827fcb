"""Users' twins in a run: ``--twins FILE`` loads them (every job's process re-loads the file through
``$TWINBENCH_TWINS``), and the run proves each selected user twin before it measures anything.

The proof is ``python -m bench.twins --twins FILE NAME...`` in a child process (the run's own process imports no
framework): weights paired, hyperparameters linted, logits and every paired layer compared. A twin that fails is
refused with the proof's sentences; ``--no-parity`` runs it anyway, every row flagged ``parity=unproven``. Every
job of a user twin carries the twin's file and the sha256 of its text into its rows (``twin_source``,
``twin_sha256``), so history and compare never join two different networks that share a name.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.core.job import Job

ROOT = Path(__file__).resolve().parents[2]


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--twins", action="append", metavar="FILE", default=None,
                    help="a twins file (path.py, or module:attr) whose TWINS dict adds your own twins, selected with "
                         "--models like the built-in ones; each is proven one network before any job (repeatable)")
    ap.add_argument("--no-parity", action="store_true",
                    help="run user twins whose proof fails (or is not run) anyway; their rows say parity=unproven")


def load(args: argparse.Namespace) -> str | None:
    """Load ``--twins`` into this process and its jobs' environment; the one-sentence error, or None."""
    if not getattr(args, "twins", None):
        return None
    from bench.zoo import TwinsError, load_user_twins
    from bench.zoo.user import set_env
    try:
        load_user_twins(args.twins)
    except TwinsError as e:
        return e.args[0]
    set_env(args.twins)
    return None


def _prove(names: list[str]) -> tuple[dict[str, dict], list[str]]:
    """{name: proof} of the twins that were proven one network, and the sentences of those that were not."""
    from bench.zoo.user import ENV
    cmd = [sys.executable, "-m", "bench.twins", *names]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", ENV: os.environ.get(ENV, "")}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    proofs = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            proofs[r["model"]] = r
    proven = {n: r for n, r in proofs.items() if r.get("ok")}
    said = [ln for ln in p.stderr.splitlines() if ln.startswith(("error:", "twin ", "Likely cause", "output shapes"))]
    if p.returncode not in (0, 1) and not said:
        said = [f"error: the proof of {', '.join(names)} ended with exit status {p.returncode}: "
                + " ".join(p.stderr.split()[-40:])]
    return proven, said


def prove_jobs(args: argparse.Namespace, jobs: list[Job]) -> tuple[list[Job], str | None]:
    """The jobs with their user twins' provenance (and parity) filled in; or the refusal's sentences."""
    from bench.zoo import get_entry
    users = {j.model: get_entry(j.model).twin for j in jobs if get_entry(j.model).twin is not None}
    if not users:
        return jobs, None
    odd = [f"{n} ({t.input_size}x{t.input_size}x{t.input_channels} in, {t.num_classes} classes)" for n, t in users.items()
           if (t.input_size, t.input_channels, t.num_classes) != (32, 3, 10)]
    if odd:
        return jobs, (f"error: the suites measure CIFAR-10-shaped twins (32x32x3 in, 10 classes out), and "
                      f"{', '.join(odd)} is not: python -m bench.twins proves it, no suite measures it yet")
    if args.no_parity:
        parity = {n: "unproven" for n in users}
        print(f"note: --no-parity: {', '.join(users)} run(s) without the proof; their rows say parity=unproven",
              file=sys.stderr)
    else:
        print(f"proving {', '.join(users)} one network (python -m bench.twins) before any job...", file=sys.stderr)
        proven, said = _prove(list(users))
        failed = [n for n in users if n not in proven]
        if failed:
            return jobs, "\n".join(said + [f"error: {', '.join(failed)} refused: not proven one network (see above); "
                                           "fix the twins, or run them anyway with --no-parity"])
        parity = {n: "proven" for n in users}
        from bench.zoo.user import PAIRS_ENV  # the profile names torch layers by their keras partners
        os.environ[PAIRS_ENV] = json.dumps({n: {r["torch"]: r["keras"] for r in proven[n]["layers"]} for n in proven})
    return [dataclasses.replace(j, twin_source=users[j.model].source, twin_sha256=users[j.model].sha256,
                                parity=parity[j.model]) if j.model in users else j for j in jobs], None
