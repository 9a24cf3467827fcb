"""The CSV schema is code: columns, units, round trip, rejection of unknown columns."""
import csv

import pytest

from bench.results.read import read_csv
from bench.results.schema import COMMON, KINDS, SCHEMA_VERSION, append_row, columns, describe


def test_every_kind_starts_with_the_environment_columns():
    common = [c[0] for c in COMMON]
    for kind in KINDS:
        assert columns(kind)[: len(common)] == common
    for col in ("run_id", "device", "framework", "backend", "precision", "batch_size"):
        assert col in common


def test_units_in_column_names():
    names = {c for kind in KINDS for c in columns(kind)}
    assert "step_ms_median" in names and "peak_alloc_mib" in names and "epoch_s" in names
    assert not {"step_time", "memory", "time"} & names


def test_round_trip_and_append(tmp_path):
    p = tmp_path / "r" / "memory.csv"
    append_row(p, "memory", {"run_id": "r1", "model": "m", "status": "ok", "peak_alloc_mib": 12.5, "oom": False})
    append_row(p, "memory", {"run_id": "r1", "model": "m", "status": "oom", "oom": True, "peak_alloc_mib": None})
    rows = list(csv.DictReader(open(p)))
    assert [r["oom"] for r in rows] == ["false", "true"]
    assert rows[0]["peak_alloc_mib"] == "12.5" and rows[1]["peak_alloc_mib"] == ""
    assert rows[0]["schema_version"] == str(SCHEMA_VERSION) and rows[0]["timestamp"]
    df = read_csv(p, "memory")
    assert len(df) == 2 and list(df.columns) == columns("memory")


def test_unknown_column_or_kind_is_rejected(tmp_path):
    with pytest.raises(KeyError, match="not in the memory schema"):
        append_row(tmp_path / "m.csv", "memory", {"peak_mb": 3})
    with pytest.raises(KeyError, match="unknown CSV kind"):
        columns("latency")


def test_describe_names_a_producer_for_every_column():
    text = describe()
    for kind in KINDS:
        for name, _, producer in COMMON + KINDS[kind]:
            assert name in text and producer.startswith("bench.")


def test_every_producer_resolves_to_code():
    """A newcomer goes from a CSV column to its code in one step: each producer is an importable object."""
    import importlib
    for kind in KINDS:
        for name, _, producer in COMMON + KINDS[kind]:
            parts, obj = producer.split("."), None
            for i in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:i]))
                except ImportError:
                    continue
                for attr in parts[i:]:
                    obj = getattr(obj, attr)  # AttributeError: the producer moved or was renamed
                break
            assert obj is not None, f"{kind}.{name}: producer {producer} does not import"


def test_append_rows_writes_all_rows_in_one_write_or_none(tmp_path, monkeypatch):
    """A job's many rows (a profile's layers and summary) go in one write + fsync: all or none, one header."""
    from bench.results import writes
    from bench.results.schema import append_rows
    p = tmp_path / "profile.csv"
    calls = []
    real = writes.append_bytes
    monkeypatch.setattr(writes, "append_bytes", lambda path, data: calls.append(path) or real(path, data))
    rows = [{"run_id": "r1", "model": "m", "layer": f"l{i}", "ms_per_step": i, "status": "ok"} for i in range(30)]
    append_rows(p, "profile", rows)
    append_rows(p, "profile", rows[:2])
    got = list(csv.DictReader(open(p)))
    assert [r["layer"] for r in got] == [f"l{i}" for i in range(30)] + ["l0", "l1"] and len(calls) == 2
    with pytest.raises(KeyError):  # one bad row: none of them is written
        append_rows(p, "profile", rows[:3] + [{"run_id": "r1", "nonsense": 1}])
    assert len(list(csv.DictReader(open(p)))) == 32
