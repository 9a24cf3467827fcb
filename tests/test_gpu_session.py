"""scripts/gpu_session.sh, rehearsed on the CPU: a phase stopped at the deadline keeps its rows, the
packed runs travel (collect), and the next call resumes only what did not finish."""
import csv
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_session.sh"


def _session(args, root, out, cifar_dir, deadline, tmp_path, **extra):
    env = {**os.environ, **extra, "GPU_SESSION_ROOT": str(root), "OUT": str(out), "GPU_SESSION_DEADLINE_S": str(deadline),
           "GPU_SESSION_RESULTS": str(tmp_path / "results"), "TWINBENCH_DATA_DIR": str(cifar_dir),
           "PYTHON": sys.executable,
           "GPU_SESSION_ARGS": "--device cpu --models resnet20_v1 --frameworks torch --batch-sizes 4,8"}
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def _ok_rows(tgz: Path) -> list[dict]:
    with tarfile.open(tgz) as t:
        names = [n for n in t.getnames() if n.endswith("throughput.csv")]
        if not names:
            return []
        text = t.extractfile(names[0]).read().decode()
    return [r for r in csv.DictReader(io.StringIO(text)) if r["status"] == "ok"]


@pytest.mark.slow
def test_phase_stops_at_the_deadline_and_resumes_on_another_machine(cifar_dir, tmp_path):
    # one job hangs (the phase runs bf16), so the deadline lands mid-run however fast the machine is
    hang = "hang:throughput/resnet20_v1/torch/bf16/b8/infer/default/synthetic"
    first = _session(["throughput"], tmp_path / "m1", tmp_path / "out1", cifar_dir, 20, tmp_path,
                     TWINBENCH_INJECT_FAULT=hang)
    assert "stopped at the deadline" in first.stderr, first.stderr[-3000:]
    assert "Traceback" not in first.stderr
    done = _ok_rows(tmp_path / "out1" / "runs.tgz")  # packed even though the phase was interrupted
    assert len(done) < 5
    # the next machine starts bare: only the packed runs travel
    c = _session(["collect", str(tmp_path / "out1" / "runs.tgz")], tmp_path / "m2", tmp_path / "x", cifar_dir, 60,
                 tmp_path)
    assert c.returncode == 0, c.stderr
    assert any((tmp_path / "results").iterdir())
    second = _session(["throughput"], tmp_path / "m2", tmp_path / "out2", cifar_dir, 500, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{5 - len(done)} of 5 jobs to run" in second.stderr
    rows = _ok_rows(tmp_path / "out2" / "runs.tgz")
    assert len(rows) == 5 and len({r["job_id"] for r in rows}) == 5


def test_unknown_phase_is_refused(tmp_path, cifar_dir):
    p = _session(["thruput"], tmp_path / "m", tmp_path / "out", cifar_dir, 60, tmp_path)
    assert p.returncode == 2 and "unknown phase 'thruput'" in p.stderr
