"""Checkpoints that survive damage, for both stacks' training loops (``bench.stacks.pytorch.train``,
``bench.stacks.keras.train``), as PyTorch Lightning and Keras ``BackupAndRestore`` keep theirs:

* :func:`save` writes the new checkpoint whole into a temporary file, then renames it over the old one, which is
  kept beside it as ``<name>.prev`` (``bench.results.writes.atomic_write``): a kill or a full disk at any moment
  leaves a whole checkpoint to resume from.
* :func:`load` tries the checkpoint, then the previous one. One that does not load (cut short, overwritten, not a
  checkpoint of this twin) is set aside as ``<name>.damaged`` (``-2``, ``-3``... if taken) with one sentence on
  stderr, and training resumes from the next one that loads, or from the start.
* A checkpoint holds the epoch rows written up to it (``rows``): a job whose ``epochs.csv`` rows were lost since
  (a damaged file whose rows ``--resume`` set aside) writes them again from it (``bench.measures.training``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.results.writes import atomic_write

T = TypeVar("T")


def previous(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path``'s is kept."""
    return Path(f"{path}.prev")


def save(path: str | os.PathLike, write: Callable[[str], None], tmp_suffix: str | None = None) -> None:
    """Write a checkpoint through ``write(tmp_path)``; the one it replaces is kept as :func:`previous`.

    Raises:
        bench.results.writes.ResultsWriteError: it could not be written (the checkpoints stay as they were).
    """
    atomic_write(path, write, tmp_suffix=tmp_suffix, keep=previous(path))


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.damaged`` (``-2``, ``-3``... when taken); returns the new path."""
    keep, n = path.with_name(path.name + ".damaged"), 2
    while keep.exists():
        keep, n = path.with_name(f"{path.name}.damaged-{n}"), n + 1
    os.replace(path, keep)
    return keep


def load(path: str | os.PathLike | None, read: Callable[[str], T], file=None) -> T | None:
    """``read(p)`` of the checkpoint at ``path``, else of the previous one; None when none is there or none loads.
    Each one that does not load is set aside (:func:`set_aside`) and said in one sentence: what failed, where it
    went, and where training resumes from."""
    if path is None:
        return None
    file = file or sys.stderr
    damaged: list[tuple[Path, Path, str]] = []
    got, source = None, None
    for candidate in (Path(path), previous(path)):
        if not candidate.exists():
            continue
        try:
            got, source = read(str(candidate)), candidate
            break
        except Exception as e:  # a checkpoint cut short raises whatever its reader raises
            why = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
            damaged.append((candidate, set_aside(candidate), why))
    resumes = f"training resumes from {source.name}" if source is not None else "training starts again from the start"
    for was, now, why in damaged:
        print(f"note: the checkpoint {was} does not load ({why}): set aside as {now.name}; {resumes}.", file=file)
    return got
