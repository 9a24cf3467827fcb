"""Writing results safely: a failed write (disk full, no permission) leaves nothing half-written behind.

Every file TwinBench writes goes through one of two functions here:

* :func:`append_bytes` appends a CSV row (``bench.schema.append_row``). The bytes go in one write +
  fsync; when a write fails or comes up short, the file is truncated back to its size before, and a
  file that this write created is removed, so every CSV still parses and never holds a header without
  its first row. A file that this write creates has its folder fsynced too (its name survives a power
  cut with it). A file whose last byte is not a newline (torn after the fact: a copy cut short, a lost
  sync) gets one first, so a new row is never glued onto a damaged one (``bench.results.read`` drops that one).
* :func:`atomic_write` writes a whole file (``run_meta.json``, checkpoints, report pages) into a
  temporary file next to it, fsyncs it, renames it over the target only when complete, and fsyncs the
  folder (the rename survives a power cut); on failure the temporary file is removed and the previous
  version stays.

Cost of the fsyncs: one fsync of the file per row (as before), plus one of the folder when a CSV is
created, and two per whole-file write (run_meta.json a few times a run, a checkpoint per epoch, a report's two
pages). Measured roughly (``scripts/fsync_cost.py``, 50 writes each) on a shared 2-core VM, ext4 on a virtual
disk, with four other sessions working, so a rough order only: an append_row ~4 ms median (0.03 ms without its
fsync), one creating its CSV ~11 ms, a write_json_atomic ~16 ms (0.2 ms without). A run pays well under a
second in all, beside a job's process start of seconds.

Both raise :class:`ResultsWriteError`, whose message is one sentence naming the file and the cause.

Test hook: ``TWINBENCH_INJECT_FAULT="enospc:<file name>"`` (``;``-separated with the worker's faults)
makes writes to files of that name fail with ENOSPC half-way, in whichever process writes them.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path


class ResultsWriteError(OSError):
    """A result, checkpoint or report file could not be written (disk full, no permission, ...).

    Attributes:
        path: the file that was being written.
        reason: the operating system's reason (e.g. "No space left on device").
    """

    def __init__(self, path: str | os.PathLike, err: BaseException) -> None:
        self.path = Path(path)
        self.reason = (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or type(err).__name__
        super().__init__(err.errno if isinstance(err, OSError) else None, self.reason, str(path))

    def __str__(self) -> str:
        return f"could not write {self.path}: {self.reason}"

    @property
    def run_dir(self) -> Path | None:
        """The results directory (the folder holding run_meta.json) the file belongs to, if any."""
        for d in self.path.parents:
            if (d / "run_meta.json").is_file():
                return d
        return None


def _injected(path: Path) -> bool:
    faults = os.environ.get("TWINBENCH_INJECT_FAULT", "")
    return f"enospc:{path.name}" in faults.split(";")


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write(fd: int, data: memoryview, path: Path) -> int:
    if _injected(path):  # a short write, then the error, as a full disk does
        if len(data) > 1:
            return os.write(fd, data[: len(data) // 2])
        raise _enospc()
    return os.write(fd, data)


def append_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Append ``data`` to ``path`` in one write + fsync, or not at all.

    Raises:
        ResultsWriteError: the bytes could not all be written; the file is as it was before
            (removed when this call created it, or when it was empty).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: its last byte
    except OSError as e:
        raise ResultsWriteError(path, e) from None
    try:
        size = os.fstat(fd).st_size
        try:
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # the file ends in a torn row: end it, so this row stays whole
            view = memoryview(data)
            while view:
                n = _write(fd, view, path)
                if n <= 0:
                    raise _enospc()
                view = view[n:]
            os.fsync(fd)
        except OSError as e:
            try:
                if size == 0:
                    os.unlink(path)  # a CSV is never left as a 0-byte file or a header without its row
                else:
                    os.ftruncate(fd, size)
            except OSError:
                pass
            raise ResultsWriteError(path, e) from None
    finally:
        os.close(fd)
    if size == 0:
        _fsync_dir(path.parent)  # a new file: its name in the folder survives a power cut too


def _fsync_dir(d: Path) -> None:
    """fsync a folder (its entries: a new or renamed file); a filesystem that cannot is left as it is."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. some network mounts) do not fsync folders
    finally:
        os.close(fd)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_write_failure(e: BaseException) -> bool:
    # torch.save reports a full disk as RuntimeError("... PytorchStreamWriter failed writing file ...")
    return isinstance(e, OSError) or (isinstance(e, RuntimeError) and "writ" in str(e).lower())


def atomic_write(path: str | os.PathLike, save: Callable[[str], None], tmp_suffix: str | None = None,
                 keep: str | os.PathLike | None = None) -> None:
    """Write a whole file through ``save(tmp_path)``, then rename it over ``path``.

    Args:
        path: the target file.
        save: writes the complete file to the path it is given.
        tmp_suffix: ending of the temporary file (default: ``.tmp`` + the target's suffix; some savers,
            e.g. ``numpy.savez``, need the right ending).
        keep: where the previous version goes once the new one is whole (None: replaced). A checkpoint keeps its
            previous one: a kill between the two renames leaves ``keep`` and the whole temporary file, never neither.

    Raises:
        ResultsWriteError: the file could not be written; the previous version (if any) is untouched
            and no temporary file is left.
    """
    path = Path(path)
    tmp = str(path.with_name(path.stem + (tmp_suffix or ".tmp" + path.suffix)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if _injected(path):
            with open(tmp, "wb") as f:
                f.write(b"\0")
            raise _enospc()
        save(tmp)
        _fsync_file(tmp)  # the bytes are on disk before the name points at them
        if keep is not None and path.exists():
            os.replace(path, keep)
        os.replace(tmp, path)
    except Exception as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if _is_write_failure(e):
            raise ResultsWriteError(path, e) from None
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``atomic_write`` of a text file (UTF-8)."""
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def write_json_atomic(path: Path, obj) -> None:
    """Write ``obj`` as JSON into ``path`` atomically.

    Raises:
        ResultsWriteError: disk full or not writable (no temporary file is left behind).
    """
    import json
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))
