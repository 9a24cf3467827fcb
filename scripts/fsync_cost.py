"""What the results writers' fsyncs cost: an ``append_row`` (one write + fsync of the file; the folder too when
the file is new) and a ``write_json_atomic`` (fsync of the temporary file, rename, fsync of the folder), against the
same writes without any fsync. Run it on an idle machine, on the disk that holds results/ (``--dir``):

    python scripts/fsync_cost.py --dir results/ --n 300

Prints the median and 90th percentile per write, in milliseconds. A number from a shared or busy machine says
little (an fsync waits for the disk, and for every other writer's dirty pages on it).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock


def _times(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def _say(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=10)
    print(f"{name:<50} median {statistics.median(ms):7.3f} ms   p90 {q[-1]:7.3f} ms   (n={len(ms)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=None, help="a folder on the disk to measure (default: the temp folder)")
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    from bench.results.schema import append_row
    from bench.results.writes import write_json_atomic
    row = {"run_id": "fsync-cost", "job_id": "j", "status": "ok", "step_times_ms": " ".join(["10.1234"] * 50)}
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="twinbench-fsync-") as tmp:
        d = Path(tmp)
        for synced in (True, False):
            ctx = contextlib.nullcontext() if synced else mock.patch("os.fsync", lambda fd: None)
            tag = "with fsync" if synced else "without fsync"
            with ctx:
                _say(f"append_row to one CSV, {tag}", _times(lambda i: append_row(d / f"t-{tag}.csv", "throughput", row), args.n))
                _say(f"append_row creating a CSV, {tag}",
                     _times(lambda i: append_row(d / f"new-{tag}-{i}.csv", "throughput", row), args.n))
                _say(f"write_json_atomic (run_meta.json), {tag}",
                     _times(lambda i: write_json_atomic(d / f"meta-{tag}.json", {"i": i, "argv": ["x"] * 20}), args.n))


if __name__ == "__main__":
    main()
