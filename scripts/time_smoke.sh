#!/usr/bin/env bash
# Times the main command, `python -m bench.run --suite smoke`, on this checkout against the landed main it started
# from (8f80138 unless BASE=<commit>), back to back on one idle machine, and checks smoke's --dry-run estimate
# against the run that follows it (issue 33: at most 0.6x of the base's wall time; the estimate within 30%).
#
#   scripts/time_smoke.sh            # from the repository root, the venv active; ~15-20 min on a 2-core CPU
#
# Order: this checkout once (it also leaves the history the estimate reads), the base once, this checkout's
# --dry-run estimate, this checkout again. Both runs of this checkout are printed; the verdict uses the second.
set -euo pipefail
BASE=${BASE:-8f80138}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/twinbench-time-XXXX)}
OUT="$WORK/results"; REPORTS="$WORK/reports"; mkdir -p "$OUT" "$REPORTS"
BASEDIR="$WORK/base"
git -C "$ROOT" worktree add --detach "$BASEDIR" "$BASE" >/dev/null
trap 'git -C "$ROOT" worktree remove --force "$BASEDIR" >/dev/null 2>&1 || true' EXIT

timed() {  # timed LABEL DIR ARGS... -> prints LABEL seconds; the run's stdout/stderr in $WORK/LABEL.log
  local label=$1 dir=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir" python -m bench.run "$@") >"$WORK/$label.log" 2>&1 || echo "($label exited $?)"
  t1=$(date +%s.%N)
  python -c "print(f'$label {float($t1) - float($t0):.1f} s')" | tee -a "$WORK/times.txt"
}

timed new1 "$ROOT" --suite smoke --out "$OUT" --reports "$REPORTS"
timed base "$BASEDIR" --suite smoke --out "$WORK/base-results" --reports "$WORK/base-reports"
(cd "$ROOT" && python -m bench.run --suite smoke --dry-run --out "$OUT") >"$WORK/estimate.txt"; tail -3 "$WORK/estimate.txt"
timed new2 "$ROOT" --suite smoke --out "$OUT" --reports "$REPORTS"

python - "$WORK" <<'PY'
import re, sys
from pathlib import Path
w = Path(sys.argv[1])
t = dict(l.split()[:2] for l in (w / "times.txt").read_text().splitlines())
t = {k: float(v) for k, v in t.items()}
text = (w / "estimate.txt").read_text()  # the total with the run's own time when an earlier run measured it
est = re.search(r"with the run's own time .*: ([\d.]+) min", text) or re.search(r"estimated time for the rest: ([\d.]+) min", text)
print(f"base {t['base']:.0f} s; this checkout {t['new1']:.0f} s then {t['new2']:.0f} s: "
      f"{t['new2'] / t['base']:.2f}x of the base (target <= 0.60x)")
if est:
    e = float(est.group(1)) * 60
    print(f"--dry-run estimate {e:.0f} s for a run of {t['new2']:.0f} s: {abs(e - t['new2']) / t['new2']:.0%} off (target <= 30%)")
print(f"runs and logs under {w}")
PY
