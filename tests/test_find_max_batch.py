"""``bench.run --suite memory --find-max-batch`` (issue #43): after a sweep's planned batches, its largest batch that
fits is found by bisection (as timm's benchmark lowers the batch after an out-of-memory), each step a normal job row.

The end-to-end case is cheap: ``TWINBENCH_INJECT_FAULT=oom-above:5`` makes every memory batch above 5 a real CPU
allocator failure, so --batch-sizes 4,8 bisects in two steps (6 out of memory, 5 fits)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measures.memory import next_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tried, nxt", [
    ({4: "ok", 8: "oom"}, 6),  # the midpoint of the gap
    ({4: "ok", 8: "oom", 6: "oom"}, 5),
    ({4: "ok", 5: "ok", 6: "oom", 8: "oom"}, None),  # the gap is closed: 5 fits, 6 does not
    ({4: "oom", 8: "skipped"}, 2),  # no batch fit: downward from the smallest tried
    ({2: "oom", 4: "oom"}, 1),
    ({1: "oom"}, None),  # not even batch 1 fits: nothing left to try
    ({4: "ok", 8: "ok"}, None),  # no out-of-memory batch: nothing to bisect
    ({4: "ok", 8: "oom", 6: "error"}, None),  # a midpoint that failed otherwise ends the bisection, not a loop
    ({64: "ok", 16: "oom", 4: "ok"}, 10),  # an ok batch above the smallest oom one does not count
])
def test_next_batch_bisects_between_the_largest_fit_and_the_smallest_oom(tried, nxt):
    assert next_batch(tried) == nxt


def test_find_max_batch_bisects_to_the_threshold_as_job_rows(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k != "TWINBENCH_INJECT_FAULT"},
           "TWINBENCH_INJECT_FAULT": "oom-above:5"}
    p = subprocess.run([sys.executable, "-m", "bench.run", "--suite", "memory", "--models", "resnet20_v1",
                        "--frameworks", "torch", "--batch-sizes", "4,8", "--device", "cpu", "--no-report",
                        "--find-max-batch", "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    with open(run / "memory.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["batch_size"]), r["status"]) for r in rows] == [(4, "ok"), (8, "oom"), (6, "oom"), (5, "ok")]
    assert "largest batch that fit 5 (6 out of memory)" in p.stdout
