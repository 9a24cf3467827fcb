"""How often a two-replica DDP (gloo) scaling job fails on this machine: the command of
tests/test_scaling.py::test_scaling_command_writes_rows, N times, in the checkout REPO (pass an older
commit's worktree to compare). Writes one CSV row per trial: exit status, the 2-replica row's status, and
whether gloo's teardown abort ("terminate called without an active exception") was seen in the command's output
or its *.log files (a replica's own stderr is not among them: a failed trial can read False there; count the
failures by rc and status).

    python scripts/ddp_teardown_check.py --repo /tmp/before --label before -n 40 --csv out.csv
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ABORT = "terminate called without an active exception"


def trial(repo: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-m", "bench.scaling", "--results-dir", d, "--stacks", "pytorch",
                            "--steps", "3", "--input-size", "8", "--per-replica-batch", "4"],
                           cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)}, capture_output=True, text=True)
        rows = [r for f in Path(d).glob("*/scaling.csv") for r in csv.DictReader(f.open())]
        two = [r["status"] for r in rows if r.get("replicas") == "2"]
        logs = "".join(f.read_text(errors="replace") for f in Path(d).rglob("*.log"))
    return {"rc": p.returncode, "status_2_replicas": two[0] if two else "",
            "abort_seen": ABORT in p.stdout + p.stderr + logs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, required=True, help="checkout to run in")
    ap.add_argument("--label", required=True, help="the label written in each row (e.g. the commit)")
    ap.add_argument("-n", type=int, default=40, help="trials (default 40)")
    ap.add_argument("--csv", type=Path, required=True, help="CSV to append to")
    a = ap.parse_args()
    if not (a.repo / "bench" / "scaling.py").is_file():
        ap.error(f"--repo {a.repo} is not a TwinBench checkout (no bench/scaling.py there)")
    if a.n < 1:
        ap.error(f"-n must be at least 1 (got {a.n})")
    if not a.csv.parent.is_dir():
        ap.error(f"--csv {a.csv}: no folder {a.csv.parent}")
    new = not a.csv.exists()
    with a.csv.open("a", newline="") as f:
        w = csv.DictWriter(f, ["label", "trial", "rc", "status_2_replicas", "abort_seen"])
        if new:
            w.writeheader()
        for i in range(1, a.n + 1):
            r = {"label": a.label, "trial": i, **trial(a.repo)}
            w.writerow(r)
            f.flush()
            print(r, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
