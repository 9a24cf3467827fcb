#!/usr/bin/env bash
# The A/A of the isolation modes (issue 33): for each installed stack, the smoke models' throughput jobs run with
# --repeats 3 under --isolation fresh and under --isolation reused, back to back, then judged with the compare
# statistics that exist (bench.report.sections.compare.throughput_table, as `python -m bench.report RUN --compare
# BASE` renders it). A stack whose pairs come out different stays fresh (DEFAULT_ISOLATION in
# bench/pipeline/executors.py).
#
#   scripts/isolation_aa.sh                 # on an idle machine, the venv active; DEVICE=cuda on a GPU
#   STACKS="torch keras:tensorflow" scripts/isolation_aa.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DEVICE=${DEVICE:-cpu}
WORK=${WORK:-$(mktemp -d /tmp/twinbench-aa-XXXX)}
OUT="$WORK/results"; mkdir -p "$OUT"
STACKS=${STACKS:-$(python -c "
from bench.pipeline.suites import installed_keras_backends
print(' '.join(['torch'] + [f'keras:{b}' for b in installed_keras_backends()]))")}
COMMON=(--suite throughput --models resnet20_v1,densenet40_k12_memeff --batch-sizes 8 --repeats 3
        --device "$DEVICE" --out "$OUT" --no-report)

for stack in $STACKS; do
  fw=${stack%%:*}; be=${stack#*:}
  sel=(--frameworks "$fw"); [ "$fw" = keras ] && sel+=(--keras-backend "$be")
  for iso in fresh reused; do
    python -m bench.run "${COMMON[@]}" "${sel[@]}" --isolation "$iso" >"$WORK/$fw-$be-$iso.log" 2>&1 || true
    ls -t "$OUT" | sed -n "1s|^|$stack $iso |p" >>"$WORK/runs.txt"
  done
done

python - "$WORK" <<'PY'
import sys
from collections import Counter
from pathlib import Path
from bench.report.common import load_run
from bench.report.sections.compare import throughput_table
from bench.results.stats import FASTER, MIN_EFFECT, SLOWER
w = Path(sys.argv[1])
runs = {}
for line in (w / "runs.txt").read_text().splitlines():
    stack, iso, run = line.split()
    runs.setdefault(stack, {})[iso] = w / "results" / run
for stack, r in runs.items():
    t = throughput_table(load_run(r["reused"]), load_run(r["fresh"]), MIN_EFFECT)
    verdicts = Counter(t.verdict) if len(t) else Counter()
    diff = verdicts[SLOWER] + verdicts[FASTER]
    print(f"{stack}: {len(t)} pairs judged (reused vs fresh, 3 repeats each), {diff} called different "
          f"({dict(verdicts)}); report: python -m bench.report {r['reused']} --compare {r['fresh']}")
print(f"runs under {w / 'results'}")
PY
