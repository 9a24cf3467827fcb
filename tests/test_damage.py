"""Faults, round 3 (issue #34): every reader of results survives files damaged after the fact.

A table, as for bad flags: every reader (the report, --compare, --resume, history, the resume's done-jobs scan,
the Ray task's rows) x every kind of damage a user's disk can produce. Each cell gives the exit status and the
sentence the reader must say (exactly once), and no reader may raise anything else (in a process: a traceback).
Recoverable damage keeps the whole rows with a note; unrecoverable damage is exit 2 for a command about one run,
and a named skip for history. The runs are tiny fakes written by the project's own writer (``append_row``); the
cases a user meets first (a torn throughput.csv, history over a damaged run) also run as real processes, and
``--resume`` of a torn run runs its lost job again (an injected OOM: no framework is imported).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.results.read import Unreadable
from bench.results.schema import FILES, append_row
from bench.results.writes import write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
ARGV = ["--suite", "throughput", "--models", "resnet20_v1", "--frameworks", "torch", "--batch-sizes", "4", "--no-report"]
JOBS = [f"throughput/resnet20_v1/torch/fp32/b4/{m}/default/{i}" for m, i in
        (("train", "synthetic"), ("infer", "synthetic"), ("train", "real"))]
NULL = "no GPU: allocator peaks not defined, a CPU run"  # a comma: the cell is quoted, as real rows' often are


def fake_run(root: Path, run_id: str, seed: int = 0) -> Path:
    """A finished CPU run of 3 throughput rows (the plan of ARGV) and 1 memory row, written by ``append_row``."""
    rng = np.random.default_rng(seed)
    d = root / run_id
    d.mkdir(parents=True)
    write_json_atomic(d / "run_meta.json", {"run_id": run_id, "argv": ARGV, "gpu": False, "suite": "throughput",
                                            "device": "cpu", "status": "finished", "hostname": "fake"})
    common = {"run_id": run_id, "status": "ok", "model": "resnet20_v1", "framework": "torch", "backend": "torch",
              "exec_mode": "eager", "device": "cpu", "precision": "fp32", "batch_size": 4, "null_reason": NULL}
    for job in JOBS:
        times = 10.0 * rng.lognormal(0, 0.05, 20)
        med = float(np.median(times))
        append_row(d / FILES["throughput"], "throughput", {
            **common, "job_id": job, "measurement": job.split("/")[5], "input": job.split("/")[7], "first_step_s": 1.0,
            "step_ms_median": med, "images_per_s": 4 / (med / 1e3), "step_times_ms": " ".join(f"{t:.4f}" for t in times)})
    append_row(d / FILES["memory"], "memory", {**common, "job_id": "memory/resnet20_v1/torch/fp32/b4/train/default",
                                               "measurement": "train", "oom": False, "saved_activations_mib": 10.0})
    return d


# ---- the kinds of damage: each changes the run folder (or the root) as a disk or a user can --------------------

def _tp(d: Path) -> Path:
    return d / FILES["throughput"]


def torn_last_row(d):  # cut inside the last row's quoted cell: pandas' "EOF inside string"
    raw = _tp(d).read_bytes()
    _tp(d).write_bytes(raw[: raw.rindex(b'"no GPU') + 12])


def partial_last_line(d):  # a copy cut short between cells: no final newline
    raw = _tp(d).read_bytes()
    _tp(d).write_bytes(raw[: raw.rindex(b"\n", 0, len(raw) - 1) + 40])


def wrong_field_count(d):  # a row with too few cells between whole ones
    lines = _tp(d).read_bytes().split(b"\n")
    lines.insert(2, b"1,run,throughput/x,2026-12-04T00:00:00+00:00,ok")
    _tp(d).write_bytes(b"\n".join(lines))


def nul_tail(d):  # a power cut on XFS/ext4: the file's new size was kept, its bytes were not
    with open(_tp(d), "ab") as f:
        f.write(b"\0" * 300)


def meta_not_json(d):
    (d / "run_meta.json").write_text('{"run_id": "bad", "argv": [')


def meta_binary(d):
    (d / "run_meta.json").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe")


def no_header(d):  # the first line lost: the file starts with a row
    _tp(d).write_bytes(_tp(d).read_bytes().split(b"\n", 1)[1])


def binary_csv(d):
    _tp(d).write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))


def empty_csv(d):
    _tp(d).write_bytes(b"")


def header_alone(d):
    _tp(d).write_bytes(_tp(d).read_bytes().split(b"\n", 1)[0] + b"\n")


def stray_file(d):  # beside the runs in the results root
    (d.parent / "notes.txt").write_text("not a run\n")
    (d.parent / "run_meta.json.bak").write_bytes(b"\0\1")


def stray_folder(d):
    (d.parent / "scratch" / "sub").mkdir(parents=True)
    (d.parent / "scratch" / "throughput.csv").write_bytes(b"\0garbage")


def trace_gone(d):  # a profile row names a trace the user has deleted since
    from test_profile import _profile_rows
    for r in _profile_rows(d.name):
        append_row(d / FILES["profile"], "profile", r)


REC, BAD = "recoverable", "unrecoverable"
TP = "throughput.csv: "
# damage -> (class, the sentence's fragment); None: no sentence at all
DAMAGES = {
    torn_last_row: (REC, TP + "1 damaged row(s) dropped (1 torn row(s)); its 2 whole row(s) are read"),
    partial_last_line: (REC, TP + "1 damaged row(s) dropped (1 partial last line(s)); its 2 whole row(s) are read"),
    wrong_field_count: (REC, TP + "1 damaged row(s) dropped (1 row(s) with the wrong number of fields); its 3 whole"),
    nul_tail: (REC, TP + "1 damaged row(s) dropped (1 row(s) that are not text); its 3 whole row(s) are read"),
    meta_not_json: (BAD, "run_meta.json cannot be read (Expecting value"),
    meta_binary: (BAD, "run_meta.json cannot be read (binary, not JSON text): a damaged run folder; restore"),
    no_header: (BAD, TP[:-2] + " has no valid header (its first line is not TwinBench's column names)"),
    binary_csv: (BAD, TP[:-2] + " is not text (binary where a CSV belongs): restore throughput.csv from a copy"),
    empty_csv: (None, None),
    header_alone: (None, None),
    stray_file: (None, None),
    stray_folder: (None, None),
    trace_gone: (None, "2 trace(s) that profile rows of "),
}
CSV_ONLY = {meta_not_json, meta_binary}  # damage the CSV readers (done-jobs, Ray rows) never see


def _cli(fn, argv, capsys):
    """Run a command's main in this process: (exit status, stderr). Any exception other than SystemExit escapes
    and fails the test, as a traceback would fail the user."""
    try:
        code = fn(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _lib(fn, capsys):
    """A library reader: 0 when it returns, 2 with its sentence when it raises Unreadable (what its command says)."""
    try:
        fn()
        code = 0
    except Unreadable as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    return code, capsys.readouterr().err


def report(root, run, out, capsys):
    from bench.report.render import main
    return _cli(main, [run.name, "--results", str(root), "--out", str(out)], capsys)


def compare(root, run, out, capsys):  # the damaged run is the one compared with
    from bench.report.render import main
    return _cli(main, ["good", "--compare", run.name, "--results", str(root), "--out", str(out)], capsys)


def resume(root, run, out, capsys):  # reads run_meta, checks every CSV, counts the jobs done
    from bench.run import main
    return _cli(main, ["--resume", run.name, "--out", str(root), "--dry-run"], capsys)


def history(root, run, out, capsys):  # a folder of runs: a damaged one is skipped, the others render
    from bench.report.history import main
    return _cli(main, ["--results", str(root), "--out", str(out)], capsys)


def done_jobs(root, run, out, capsys):  # --resume's and the Ray driver's scan of the finished jobs
    from bench.pipeline.jobs import done_jobs
    return _lib(lambda: done_jobs(run), capsys)


def ray_rows(root, run, out, capsys):  # a Ray task's rows, read back from its node's folder
    from bench.pipeline.executors import _read_rows
    return _lib(lambda: _read_rows(run), capsys)


READERS = (report, compare, resume, history, done_jobs, ray_rows)
MULTI = {history}
SINGLE_RUN_TRACE = {report}  # the one reader that links traces


def expected(damage, reader) -> tuple[int, str | None, str | None]:
    """(exit status, the line's prefix, the sentence's fragment) of one cell."""
    cls, fragment = DAMAGES[damage]
    if damage in CSV_ONLY and reader in (done_jobs, ray_rows):
        return 0, None, None
    if damage is trace_gone:
        return (0, "note:", fragment) if reader in SINGLE_RUN_TRACE else (0, None, None)
    if cls == REC:
        return 0, "note:", fragment
    if cls == BAD:
        return (0, "note: skipped the run bad:", fragment) if reader in MULTI else (2, "error:", fragment)
    return 0, None, None


CELLS = [(d, r) for d in DAMAGES for r in READERS]


@pytest.mark.parametrize("damage,reader", CELLS, ids=[f"{d.__name__}-{r.__name__}" for d, r in CELLS])
def test_every_reader_survives_every_damage(damage, reader, tmp_path, capsys):
    root = tmp_path / "results"
    fake_run(root, "good", seed=1)
    run = fake_run(root, "bad", seed=2)
    damage(run)
    capsys.readouterr()
    code, err = reader(root, run, tmp_path / "reports", capsys)
    want_code, prefix, fragment = expected(damage, reader)
    assert "Traceback" not in err
    assert code == want_code, err
    said = [ln for ln in err.splitlines() if ln.startswith(("note:", "error:", "warning:"))]
    if fragment is None:
        assert said == [], err
    else:
        assert len(said) == 1, err  # one sentence, said once, even where the run is read twice
        assert said[0].startswith(prefix) and fragment in said[0], err
        assert "bad" in said[0]  # it names the file (of the run)


def test_the_table_covers_every_reader_and_every_damage():
    """The cells are the product: a reader or a damage added later gets its column or row."""
    assert len(CELLS) == len(DAMAGES) * len(READERS) == 13 * 6
    assert {cls for cls, _ in DAMAGES.values()} == {REC, BAD, None}


# ---- what the whole rows give the user -------------------------------------------------------------------------

def test_the_report_of_a_torn_run_shows_its_whole_rows(tmp_path, capsys):
    from bench.report.render import main
    root = tmp_path / "results"
    torn_last_row(fake_run(root, "bad"))
    assert main(["bad", "--results", str(root), "--out", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "bad" / "index.md").read_text()
    section = md.split("## Throughput")[1].split("\n## ")[0]
    rows = [ln for ln in section.splitlines() if "| resnet20_v1 |" in ln and "| synthetic |" in ln]
    assert len(rows) == 2 and "| real |" not in section, section  # the two whole rows; the torn one (train, real) gone
    assert "Damaged results file: " in md.split("## ")[1] and "1 damaged row(s) dropped (1 torn row(s))" in md


def test_history_names_the_run_it_skipped_in_the_report(tmp_path, capsys):
    from bench.report.history import main
    root = tmp_path / "results"
    for i in range(2):
        fake_run(root, f"good{i}", seed=i)
    meta_not_json(fake_run(root, "bad"))
    assert main(["--results", str(root), "--out", str(tmp_path / "h")]) == 0
    md = (tmp_path / "h" / "index.md").read_text()
    assert "| good0 |" in md and "| good1 |" in md and "| bad |" not in md
    assert "## Runs skipped (cannot be read)" in md and "bad: " in md and "run_meta.json cannot be read" in md


@pytest.mark.parametrize("cut", [torn_last_row, partial_last_line, nul_tail])
def test_a_row_appended_after_damage_stays_whole(cut, tmp_path):
    """The writer ends a torn file before it appends: the new row is never glued onto the damaged one."""
    from bench.results.read import read_table
    run = fake_run(tmp_path, "r")
    cut(run)
    append_row(_tp(run), "throughput", {"run_id": "r", "job_id": "new", "status": "ok"})
    t = read_table(_tp(run))
    assert [r["job_id"] for r in t.rows][-1] == "new" and t.dropped == 1


def test_a_cell_over_several_lines_is_whole_and_a_torn_one_loses_only_itself(tmp_path):
    """A traceback in an error cell spans lines inside quotes; cut inside it, and the rows after it still read."""
    from bench.results.read import read_table
    p = tmp_path / FILES["throughput"]
    for i in range(3):
        append_row(p, "throughput", {"run_id": "r", "job_id": f"j{i}", "status": "error",
                                     "error": f"Traceback:\n  line {i}, in x\nValueError: bad, {i}"})
    raw = p.read_bytes()
    assert [r["job_id"] for r in read_table(p).rows] == ["j0", "j1", "j2"]
    assert read_table(p).rows[1]["error"] == "Traceback:\n  line 1, in x\nValueError: bad, 1"
    cut = raw.index(b"  line 1")  # row j1 torn inside its quoted cell, then whole rows appended after it
    p.write_bytes(raw[:cut] + b"\n" + raw.split(b"\n", 1)[1])
    t = read_table(p)
    assert [r["job_id"] for r in t.rows] == ["j0", "j0", "j1", "j2"] and t.damaged == {"torn row(s)": 1}


def test_repair_sets_the_damaged_rows_aside_and_keeps_the_original(tmp_path):
    from bench.results.read import read_table, repair
    run = fake_run(tmp_path, "r")
    torn_last_row(run)
    before = _tp(run).read_bytes()
    (said,) = repair(run)
    assert "1 damaged row(s) set aside" in said and "throughput.csv.damaged" in said
    assert (run / "throughput.csv.damaged").read_bytes() == before
    t = read_table(_tp(run))
    assert t.dropped == 0 and [r["job_id"] for r in t.rows] == JOBS[:2]
    assert repair(run) == []  # nothing left to repair


# ---- as a user runs them: real processes -----------------------------------------------------------------------

def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TWINBENCH_INJECT_FAULT"}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def _proc(module, *args, **env):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=_env(**env),
                          capture_output=True, text=True, timeout=300)


def test_torn_throughput_report_and_history_as_processes(tmp_path):
    root = tmp_path / "results"
    fake_run(root, "good", seed=1)
    torn_last_row(fake_run(root, "torn", seed=2))
    meta_not_json(fake_run(root, "bad", seed=3))
    p = _proc("bench.report", "torn", "--results", root, "--out", tmp_path / "reports")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("throughput.csv: 1 damaged row(s) dropped (1 torn row(s)); its 2 whole row(s)") == 1, p.stderr
    p = _proc("bench.report", "bad", "--results", root, "--out", tmp_path / "reports")
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("error:") == 1, p.stderr
    p = _proc("bench.history", "--results", root, "--out", tmp_path / "h")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.count("note: skipped the run bad: ") == 1 and "run_meta.json cannot be read" in p.stderr
    md = (tmp_path / "h" / "index.md").read_text()
    assert "| good |" in md and "| torn |" in md and "## Runs skipped" in md


def test_resume_of_a_torn_run_reruns_the_lost_job_with_no_duplicate(tmp_path):
    """A real run (3 throughput jobs, each an injected OOM row: no framework), its last row torn, then --resume."""
    oom = ";".join(f"oom:{j}" for j in JOBS)
    p = _proc("bench.run", *ARGV, "--out", tmp_path, TWINBENCH_INJECT_FAULT=oom)
    assert p.returncode == 0, p.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    raw = _tp(run).read_bytes()
    _tp(run).write_bytes(raw[: len(raw) - 25])  # the third job's row torn
    r = _proc("bench.run", "--resume", run.name, "--out", tmp_path, TWINBENCH_INJECT_FAULT=oom)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.count("1 damaged row(s) set aside (1 partial last line(s))") == 1, r.stderr[-2000:]
    assert "1 of 3 jobs to run" in r.stderr, r.stderr[-2000:]
    import csv
    with open(_tp(run), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["job_id"] for row in rows] == JOBS  # the lost job once more, and no duplicate
    assert (run / "throughput.csv.damaged").read_bytes() == raw[: len(raw) - 25]
    assert json.loads((run / "run_meta.json").read_text())["status"] == "finished"


def test_readers_added_with_harness_cost_and_scaling_keep_whole_rows(tmp_path, capsys):
    """jobs.csv (the report's harness section, --dry-run's estimates) with a torn last row: the whole rows are read and
    the damage said; a dp_parity.json that is not JSON: the Scaling section says so in one line instead of failing."""
    from bench.pipeline.estimate import load_history, machine, run_overheads
    from bench.report.sections.harness import load_jobs
    from bench.report.sections.scaling import section_scaling
    from bench.results.schema import FILES, SCHEMA_VERSION, append_row
    run = tmp_path / "r1"
    run.mkdir()
    host, cpu, cores = machine()
    (run / "run_meta.json").write_text(json.dumps({"run_id": "r1", "suite": "smoke", "run_wall_s": 100.0,
                                                   "hostname": host, "cpu": cpu, "cpu_count": cores}))
    for i in range(3):
        append_row(run / FILES["jobs"], "jobs", {"schema_version": SCHEMA_VERSION, "run_id": "r1", "status": "ok",
                                                 "job_id": f"throughput/m{i}", "job_kind": "throughput", "wall_s": 10.0})
    with open(run / FILES["jobs"], "ab") as f:
        f.write(b"1,r1,throughput/m9,2026")  # the last row cut short
    assert len(load_jobs(run)) == 3
    history, runs = load_history(tmp_path)
    assert runs == ["r1"] and sorted(k for k, _ in history) == ["throughput/m0", "throughput/m1", "throughput/m2"]
    assert run_overheads(tmp_path) == {"smoke": [70.0]}
    assert "jobs.csv: 1 damaged row(s) dropped" in capsys.readouterr().err
    (run / "dp_parity.json").write_text("{not json")
    text = " ".join(section_scaling({"dir": run}).text)
    assert "dp_parity.json cannot be read" in text
