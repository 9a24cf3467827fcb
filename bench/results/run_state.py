"""Who writes a run, and how it ended: unique run folders, one writer per run, ``run_meta.json``'s ``status``.

* :func:`new_run_dir` claims ``results/<YYYYmmdd-HHMMSS-suite>/`` with an atomic ``mkdir``; a second run
  started in the same second on the same results root gets ``...-suite-2`` (then ``-3``...), never the
  same folder.
* :class:`RunLock` is held in the run folder (``.lock``: ``fcntl.flock`` on the file, with the holder's
  pid, host, start time and command written inside) while a process appends to the run. A second writer
  (``bench.run --resume RUN`` while RUN still runs) is refused with :class:`RunLocked`, one sentence naming
  the holder. The kernel drops a flock when its process dies (even by ``kill -9``), so a lock whose
  process is gone is simply taken over; the pid/host left inside are reported as a note. A writer that
  ends cleanly removes the file.
* :func:`holder` peeks without taking the lock (``bench.report`` says a run is still being written).
* :func:`set_status` records in ``run_meta.json`` (atomically) whether the run is ``running``,
  ``finished``, ``interrupted`` (with the cause: Ctrl-C, SIGTERM, a full disk) or ``failed``.

On a shared filesystem: the lock is as good as the filesystem's ``flock``. Linux NFS clients map it to
NFS byte-range locks, which hold between machines (NFSv4, or v3 with a lock manager); filesystems without
locking (some FUSE or SMB mounts) answer ``ENOLCK``/``EOPNOTSUPP``, and the run then goes on unlocked with
a note saying so. With ``--executor ray`` only the driver writes the run folder (nodes write into their
own temporary folders and send the rows back), so the one lock on the driver's machine covers the run.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

LOCK_NAME = ".lock"
STATUSES = ("running", "finished", "interrupted", "failed")


class RunLocked(Exception):
    """Another live process holds the run's lock; the message names it and what to do."""


def new_run_dir(root: Path, stem: str) -> tuple[str, Path]:
    """Claim a fresh run folder under ``root``: ``stem``, else ``stem-2``, ``stem-3``... (atomic ``mkdir``).

    Raises:
        OSError: ``root`` cannot be created or written (the precondition pass checks that first).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        run_id = stem if n == 1 else f"{stem}-{n}"
        try:
            (root / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, root / run_id
    raise FileExistsError(f"no free run id for {stem} under {root}")


def _read_holder(path: Path) -> dict | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return {"pid": "?", "host": "?", "since": "?"}


def describe_holder(h: dict) -> str:
    return f"pid {h.get('pid', '?')} on {h.get('host', '?')}, since {h.get('since', '?')}"


def holder(run_dir: Path) -> dict | None:
    """The live writer of ``run_dir`` ({pid, host, since, argv}), or None when no process holds its lock."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: works on a read-only file, and over NFS
    except BlockingIOError:
        return _read_holder(path) or {}
    except OSError:
        return None  # no locking on this filesystem: nothing to tell
    finally:
        os.close(fd)
    return None


class RunLock:
    """The lock of one run folder, held by this process while it writes the run (see the module doc)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: int | None = None
        self.note: str | None = None

    def acquire(self, argv: list[str] | None = None) -> str | None:
        """Take the lock; returns a note (a stale lock taken over, or no locking here) or None.

        Raises:
            RunLocked: a live process holds it.
            OSError: the lock file cannot be created (the run folder is not writable).
        """
        for _ in range(20):  # the file may be removed by its releasing holder between open and flock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                h = _read_holder(self.path) or {}
                raise RunLocked(f"the run {self.run_dir.name} is being written by another process "
                                f"({describe_holder(h)}): wait until it ends, or stop it, then try again "
                                "(a lock whose process is gone is taken over)") from None
            except OSError as e:
                if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    os.close(fd)
                    raise
                self.fd = fd
                self.note = (f"the filesystem of {self.run_dir} does not support locks ({e.strerror}): the run is "
                             "written without one; do not start a second writer on it")
                return self.note
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise RunLocked(f"could not take the lock of {self.run_dir} (it kept changing): try again")
        self.fd = fd
        stale = _read_holder(self.path)
        if stale:
            self.note = (f"took over the lock of {self.run_dir.name}: its previous writer ({describe_holder(stale)}) "
                         "is gone without releasing it")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(), "argv": argv or sys.argv[1:]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        return self.note

    def release(self) -> None:
        """Remove the lock file (still holding it, so that no one takes the old file) and drop the lock."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def set_status(run_dir: Path, status: str, cause: str | None = None, **extra) -> bool:
    """Record how the run stands in its ``run_meta.json`` (atomically); returns False when it could not be
    written (a full disk: the status stays what it was, and the lock tells a live writer from a dead one)."""
    from bench.results.writes import ResultsWriteError, write_json_atomic
    assert status in STATUSES, status
    path = Path(run_dir) / "run_meta.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    meta.update(status=status, status_cause=cause, status_at=now(), **extra)
    try:
        write_json_atomic(path, meta)
    except ResultsWriteError:
        return False
    return True


def state_sentence(run_dir: Path, meta: dict) -> str | None:
    """One sentence for the top of a report when the run is not a finished one (None when it is, or when
    the run predates the ``status`` field)."""
    status = meta.get("status")
    rid = meta.get("run_id", Path(run_dir).name)
    rows_so_far = "the figures below hold only the rows written so far"
    if status in (None, "finished"):
        return None
    if status == "running":
        h = holder(run_dir)
        if h is not None:
            return f"Run {rid} is still being written ({describe_holder(h)}): {rows_so_far}; render it again when it ends."
        return (f"Run {rid} stopped without recording how it ended (its process is gone: killed, or the machine "
                f"went down): {rows_so_far}; `python -m bench.run --resume {rid}` goes on.")
    cause = f" ({meta.get('status_cause')})" if meta.get("status_cause") else ""
    if status == "interrupted":
        return (f"Run {rid} was interrupted{cause} at {meta.get('status_at', '?')}: {rows_so_far}; "
                f"`python -m bench.run --resume {rid}` goes on.")
    return f"Run {rid} failed{cause} at {meta.get('status_at', '?')}: {rows_so_far}."
