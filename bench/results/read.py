"""Reading results back: the one path every reader of a run folder uses (CSVs and ``run_meta.json``).

A results file can be damaged after TwinBench wrote it: a copy interrupted, a sync lost at a power cut, a disk
filled by something else, an editor. The rules, as a write-ahead log recovers from a torn last record:

* **Recoverable damage** -- a torn last row, a trailing partial line (no final newline), a row with the wrong
  number of fields, a row that is not text (NUL bytes a power cut can leave at the end of a file): every whole
  row is kept, the damaged ones are dropped, and :attr:`Table.note` says in one sentence which file and how
  many rows. ``--resume`` sets the damaged rows aside (:func:`repair`) and runs their jobs again.
* **Unrecoverable damage** -- a ``run_meta.json`` that cannot be read, a CSV without a valid header (binary
  where text belongs, a first line that is not the column names), rows of another schema version: the reader
  raises :class:`Unreadable`, whose message is one sentence naming the file and the fix. A command about one
  run exits 2 with it; a command over many runs (history) skips that run with it and goes on.

A missing or empty (0-byte) CSV holds no rows; a header alone is a table of no rows. A row is whole when its
record (quoted fields may span lines) ends with a newline and has as many fields as the header.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.results.schema import ADDED_IN_V1, FILES, KINDS, SCHEMA_VERSION, columns

_KIND_OF = {name: kind for kind, name in FILES.items()}
_SAID: set[str] = set()


class Unreadable(ValueError):
    """A results file this code cannot read at all; the message is one sentence: the file, why, and the fix."""


def note(sentence: str) -> None:
    """Say ``sentence`` on stderr as a note, once per process (a run read twice is not reported twice)."""
    if sentence not in _SAID:
        _SAID.add(sentence)
        print(f"note: {sentence}", file=sys.stderr)


# ---- run_meta.json ------------------------------------------------------------------------------------------

def read_meta(run_dir: str | os.PathLike) -> dict:
    """The run's ``run_meta.json`` as a dict.

    Raises:
        Unreadable: missing, not text, not JSON, or not a JSON object (one sentence with the fix).
    """
    path = Path(run_dir) / "run_meta.json"
    fix = "a damaged run folder; restore run_meta.json from a copy, or move the run out of the results root"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise Unreadable(f"{Path(run_dir)} is not a TwinBench results directory (no run_meta.json): give a "
                         "results/<run_id>/ folder written by python -m bench.run") from None
    except OSError as e:
        raise Unreadable(f"{path} cannot be read ({e.strerror or e}): fix its permissions, or move the run out "
                         "of the results root") from None
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Unreadable(f"{path} cannot be read (binary, not JSON text): {fix}") from None
    except ValueError as e:
        raise Unreadable(f"{path} cannot be read ({e}): {fix}") from None
    if not isinstance(meta, dict):
        raise Unreadable(f"{path} cannot be read (not a JSON object): {fix}")
    return meta


# ---- CSVs ---------------------------------------------------------------------------------------------------

@dataclass
class Table:
    """The whole rows of one results CSV, and what was dropped."""

    path: Path
    kind: str | None
    header: list[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    records: list[str] = field(default_factory=list)  # the text of each whole row, as written
    header_text: str = ""
    damaged: dict[str, int] = field(default_factory=dict)  # why -> how many rows
    later: list[str] = field(default_factory=list)  # schema columns added after the file was written: left empty

    @property
    def dropped(self) -> int:
        return sum(self.damaged.values())

    @property
    def note(self) -> str | None:
        """One sentence: which file, how many rows were dropped and why (None when nothing was)."""
        if not self.dropped:
            return None
        why = ", ".join(f"{n} {w}" for w, n in self.damaged.items())
        return (f"{self.path}: {self.dropped} damaged row(s) dropped ({why}); its {len(self.rows)} whole row(s) "
                f"are read (python -m bench.run --resume {self.path.parent.name} runs the dropped rows' jobs again)")

    def frame(self):
        """The whole rows as a pandas DataFrame, typed as ``pandas.read_csv`` types the file."""
        import pandas as pd
        df = pd.read_csv(io.StringIO(self.header_text + "".join(self.records)))
        return df.assign(**{c: float("nan") for c in self.later}) if self.later else df


def _fix(path: Path) -> str:
    return (f"restore {path.name} from a copy, or move it out of {path.parent} (python -m bench.run --resume "
            f"{path.parent.name} then runs its jobs again)")


def _header(path: Path, raw: bytes) -> tuple[list[str], str, bytes]:
    """(column names, the header line, the rest); Unreadable when the first line is not a TwinBench header."""
    line, _, body = raw.partition(b"\n")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:
        raise Unreadable(f"{path} is not text (binary where a CSV belongs): {_fix(path)}")
    try:
        header = next(csv.reader([text]), [])
    except csv.Error:
        header = []
    if "schema_version" not in header or len(set(header)) != len(header):
        raise Unreadable(f"{path} has no valid header (its first line is not TwinBench's column names): a damaged "
                         f"or foreign CSV; {_fix(path)}")
    return header, text + "\n", body


def _parse(chunk: bytes, width: int) -> tuple[str, list[str]] | None:
    """(text, fields) of one record when it is text and has ``width`` fields, else None."""
    try:
        text = chunk.decode("utf-8")
        parsed = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error):
        return None
    if "\0" in text or len(parsed) != 1 or len(parsed[0]) != width:
        return None
    return text, parsed[0]


def _records(body: bytes, width: int):
    """(text, fields) of each whole record of ``body``, or (None, why) for each damaged one. A record whose quoted
    field spans lines is whole when it parses; else its first line alone is dropped and reading goes on at the next
    line (a torn row followed by whole ones loses only itself)."""
    lines = body.split(b"\n")
    tail = lines.pop()  # what follows the last newline: a partial line unless empty
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        j, quotes = i, lines[i].count(b'"')
        while quotes % 2 and j + 1 < len(lines):  # a quoted field goes on over the next line
            j += 1
            quotes += lines[j].count(b'"')
        whole = None if quotes % 2 else _parse(b"\n".join(lines[i:j + 1]) + b"\n", width)
        if whole is not None:
            yield whole
            i = j + 1
            continue
        if lines[i].count(b'"') % 2:
            why = "torn row(s)"
        elif b"\0" in lines[i] or not _is_text(lines[i]):
            why = "row(s) that are not text"
        else:
            why = "row(s) with the wrong number of fields"
        yield None, why
        i += 1
    if tail.strip(b"\0 \r\t"):  # cut inside a quoted cell (a torn row), or between cells
        yield None, "torn row(s)" if tail.count(b'"') % 2 else "partial last line(s)"
    elif tail:
        yield None, "row(s) that are not text"


def _is_text(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_table(path: str | os.PathLike, kind: str | None = None) -> Table | None:
    """The whole rows of the results CSV ``path`` (``kind``: from the file name when not given); None when the
    file is missing or empty (no rows).

    Raises:
        Unreadable: no valid header (binary, a first line that is not the column names, columns of the kind
            missing), or rows of another schema version; one sentence naming the file and the fix.
    """
    path = Path(path)
    kind = kind or _KIND_OF.get(path.name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Unreadable(f"{path} cannot be read ({e.strerror or e}): fix its permissions, or move it out of "
                         f"{path.parent}") from None
    if not raw:
        return None
    header, header_text, body = _header(path, raw)
    t = Table(path, kind, header, header_text=header_text)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # step_times_ms of a long run is a long cell
    for text, got in _records(body, len(header)):
        if text is None:  # got: why the row is damaged
            t.damaged[got] = t.damaged.get(got, 0) + 1
            continue
        t.rows.append(dict(zip(header, got)))
        t.records.append(text)
    _check_versions(t)
    missing = [c for c in columns(kind) if c not in header] if kind in KINDS else []
    later = [c for c in missing if c in ADDED_IN_V1]  # a file written before these columns existed: empty there
    missing = [c for c in missing if c not in later]
    if missing:
        raise Unreadable(f"{path} has no valid header (columns {', '.join(missing[:4])}"
                         f"{'...' if len(missing) > 4 else ''} missing): a damaged or foreign CSV; {_fix(path)}")
    for r in t.rows:
        r.update({c: "" for c in later})
    t.later = later
    return t


def _check_versions(t: Table) -> None:
    versions = {r["schema_version"] for r in t.rows}
    try:
        found = sorted({int(v) for v in versions})
    except (TypeError, ValueError):
        raise Unreadable(f"{t.path} has rows without a valid schema_version ({sorted(map(str, versions))[:3]}): a "
                         "damaged or foreign CSV; move it out of the run folder") from None
    newer = [v for v in found if v > SCHEMA_VERSION]
    if newer:
        raise Unreadable(f"{t.path} was written with CSV schema version {newer[-1]}, newer than this code's "
                         f"{SCHEMA_VERSION}: read it with the TwinBench version that wrote it (update this checkout)")
    older = [v for v in found if v < SCHEMA_VERSION]
    if older:  # no older version exists yet: when one does, say here how to read it
        raise Unreadable(f"{t.path} was written with CSV schema version {older[0]}, older than this code's "
                         f"{SCHEMA_VERSION}, and this code has no reader for it: use the TwinBench version that wrote it")


def read_rows(path: str | os.PathLike, kind: str | None = None) -> list[dict[str, str]]:
    """The whole rows of ``path`` as dicts of strings ([] when missing or empty); the note said when rows were
    dropped. Raises :class:`Unreadable` as :func:`read_table` does."""
    t = read_table(path, kind)
    if t is None:
        return []
    if t.note:
        note(t.note)
    return t.rows


def read_frame(path: str | os.PathLike, kind: str | None = None):
    """The whole rows of ``path`` as a DataFrame (None when missing or empty); the note said when rows were
    dropped. Raises :class:`Unreadable` as :func:`read_table` does."""
    t = read_table(path, kind)
    if t is None:
        return None
    if t.note:
        note(t.note)
    return t.frame()


def read_csv(path: str | os.PathLike, kind: str):
    """The whole rows of a results CSV of ``kind`` as a pandas DataFrame, the schema's columns and no row when the
    file is missing or empty (the header checked against the schema).

    Raises:
        Unreadable: no valid header, or rows of another schema version (one sentence).
    """
    df = read_frame(path, kind)
    if df is None:
        import pandas as pd
        return pd.DataFrame(columns=columns(kind))
    return df


def check_run(run_dir: str | os.PathLike) -> dict:
    """``run_meta.json`` and every results CSV of a run folder, read once; returns the meta.

    Raises:
        Unreadable: the first thing that cannot be read (one sentence with the fix).
    """
    meta = read_meta(run_dir)
    for kind in KINDS:
        t = read_table(Path(run_dir) / FILES[kind], kind)
        if t is not None and t.note:
            note(t.note)
    return meta


def repair(run_dir: str | os.PathLike) -> list[str]:
    """Before ``--resume`` appends to a run: each CSV with damaged rows is rewritten with its whole rows alone
    (atomically), the original kept beside it as ``<name>.damaged`` (``-2``, ``-3``... if taken). Returns one
    sentence per file repaired. The jobs of the dropped rows have no final row left, so the resume runs them again.

    Raises:
        Unreadable: a CSV that cannot be read at all (nothing is changed).
    """
    from bench.results.writes import atomic_write, write_text_atomic
    tables = [read_table(Path(run_dir) / FILES[kind], kind) for kind in KINDS]
    said = []
    for t in tables:
        if t is None or not t.dropped:
            continue
        keep = t.path.with_name(t.path.name + ".damaged")
        n = 2
        while keep.exists():
            keep, n = t.path.with_name(f"{t.path.name}.damaged-{n}"), n + 1
        raw = t.path.read_bytes()
        atomic_write(keep, lambda p, raw=raw: Path(p).write_bytes(raw))
        write_text_atomic(t.path, t.header_text + "".join(t.records))
        why = ", ".join(f"{n} {w}" for w, n in t.damaged.items())
        said.append(f"{t.path}: {t.dropped} damaged row(s) set aside ({why}), the original kept as {keep.name}; "
                    f"its {len(t.rows)} whole row(s) stay and the jobs of the dropped rows run again")
    return said


# ---- one row per job: the last attempt ----------------------------------------------------------------------

ATTEMPTS = ".attempts"  # beside each CSV: the rows of earlier attempts of jobs run again (<file>.attempts)


def supersede(run_dir: str | os.PathLike, job_ids: set[str] | frozenset[str]) -> list[str]:
    """Before ``--resume`` runs ``job_ids`` again: their earlier attempts' rows leave the run's CSVs (``jobs.csv``
    included) for ``<file>.attempts`` beside them, so that every reader finds one attempt per job, the last one.
    A training job's ok epoch rows stay: it resumes from them (its failed attempt's error row moves). Returns one
    sentence per file changed.

    Raises:
        Unreadable: a CSV that cannot be read at all (nothing is changed in it).
    """
    from bench.results.writes import append_bytes, write_text_atomic
    said = []
    for kind in KINDS:
        t = read_table(Path(run_dir) / FILES[kind], kind)
        if t is None or "job_id" not in t.header:
            continue
        old = [i for i, r in enumerate(t.rows)
               if r["job_id"] in job_ids and not (kind == "epochs" and r["status"] == "ok")]
        if not old:
            continue
        aside = t.path.with_name(t.path.name + ATTEMPTS)
        fresh = not aside.exists() or aside.stat().st_size == 0
        append_bytes(aside, ((t.header_text if fresh else "") + "".join(t.records[i] for i in old)).encode())
        gone = set(old)
        write_text_atomic(t.path, t.header_text + "".join(r for i, r in enumerate(t.records) if i not in gone))
        jobs = len({t.rows[i]["job_id"] for i in old})
        said.append(f"{t.path.name}: the earlier attempt of {jobs} job(s) run again now ({len(old)} row(s)) moved to "
                    f"{aside.name}")
    return said


def earlier_attempts(run_dir: str | os.PathLike, kind: str) -> list[dict[str, str]]:
    """The rows :func:`supersede` moved aside from the ``kind`` CSV of a run (their whole rows; [] when none)."""
    try:
        t = read_table(Path(run_dir) / (FILES[kind] + ATTEMPTS), kind)
    except Unreadable:
        return []
    return [] if t is None else t.rows
