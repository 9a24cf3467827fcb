#!/usr/bin/env bash
# Issue #35's measurement, on an idle machine (no other process: the timings are the point).
#
#   bash scripts/changepoint_demo.sh series   # 8 throughput-and-profile runs, a layer-kind slowdown from run 5,
#                                             # then bench.history (change points, --fail-on-change) and the compare
#                                             # of runs 4 and 5 (profile diff, --fail-on-regression)
#   bash scripts/changepoint_demo.sh aa       # README's A/A procedure after the scipy switch: two runs, compared;
#                                             # then TWINBENCH_INJECT_SLOWDOWN="torch eager:1.2", gated at 10% and 30%
#   bash scripts/changepoint_demo.sh summary  # print what `series` found again (no new run)
#
# Each run of `series`: `bench.run --suite throughput --models resnet20_v1 --frameworks torch,keras
# --keras-backend tensorflow --repeats 3 --device cpu`, then `bench.profile resnet20_v1` (PyTorch eager and Keras on
# TensorFlow), whose profile.csv and traces/ are moved into the throughput run's folder (bench.run runs one suite a
# run; the compare and the history read a run's profile rows beside its throughput rows). From run 5 on,
# TWINBENCH_INJECT_LAYER_SLOWDOWN="conv:0.15:torch": every PyTorch convolution does 15% more work (a second pass on
# 5 of its 32 examples), the Keras twin untouched.
#
# Expected time on the project's 2-core VM, idle: `bench.run --dry-run` estimates 7.7 min for the throughput run (18 jobs)
# and 0.8 min for the profile run, so about 70 min for the series; measured throughput runs took 6-10 min (README:
# 6 min for two models on the fastest VM, 16-19 min on the slowest), a profile run 1-2 min: about 60-90 min for the
# series (8 runs), 20-60 min for `aa` (three runs of two models). Everything lands under $DEMO (default .dev/changepoint_demo/,
# git-ignored); a run already there is kept (rerunning resumes the series at the first missing run).
# Needs CIFAR-10 for the real-input jobs (TWINBENCH_DATA_DIR, as bench.run). DEMO_ARGS is appended to each
# bench.run / bench.profile command line (a rehearsal: DEMO=/tmp/demo RUNS=4 SLOW_FROM=3 FRAMEWORKS=torch DEMO_ARGS="--batch-sizes 4").
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DEMO=${DEMO:-.dev/changepoint_demo}
RUNS=${RUNS:-8}
SLOW_FROM=${SLOW_FROM:-5}
SLOWDOWN=${SLOWDOWN:-conv:0.15:torch}
COMMON=(--device cpu --frameworks "${FRAMEWORKS:-torch,keras}" --keras-backend tensorflow --no-report)
mkdir -p "$DEMO/results" "$DEMO/profiles" "$DEMO/aa"

ok_or_some_failed() {  # bench.run's exit 1: a job failed (kept in the summary); anything else stops the series
  [ "$1" -eq 1 ] || exit "$1"; echo "(a job failed: exit 1; its row says why; the series goes on)" >&2
}

newest() { { ls -td "$1"/*/ 2>/dev/null || true; } | head -1 | sed 's:/$::'; }

one_run() {  # $1: the run's number (1-based)
  local i=$1 env=() before tp prof
  if [ -f "$DEMO/results/.run$i" ]; then echo "run $i: already there ($(cat "$DEMO/results/.run$i"))"; return; fi
  [ "$i" -ge "$SLOW_FROM" ] && env=(env "TWINBENCH_INJECT_LAYER_SLOWDOWN=$SLOWDOWN")
  echo "== run $i of $RUNS ${env[*]:-} ($(date -u +%H:%M:%S))"
  before=$(newest "$DEMO/results")
  ${env[@]+"${env[@]}"} python -m bench.run --suite throughput --models resnet20_v1 --repeats 3 "${COMMON[@]}" \
    --out "$DEMO/results" ${DEMO_ARGS:-} || ok_or_some_failed $?
  tp=$(newest "$DEMO/results")
  [ "$tp" != "$before" ] || { echo "run $i: no new throughput run" >&2; exit 1; }
  ${env[@]+"${env[@]}"} python -m bench.profile resnet20_v1 "${COMMON[@]}" --out "$DEMO/profiles" ${DEMO_ARGS:-} \
    || ok_or_some_failed $?
  prof=$(newest "$DEMO/profiles")
  python - "$prof" "$tp" <<'EOF'
import shutil, sys
from pathlib import Path
import pandas as pd
prof, tp = map(Path, sys.argv[1:])
rows = pd.read_csv(prof / "profile.csv")
rows["run_id"] = tp.name  # the rows belong to the throughput run they now sit beside
rows.to_csv(tp / "profile.csv", index=False)
if (prof / "traces").is_dir():
    shutil.copytree(prof / "traces", tp / "traces", dirs_exist_ok=True)
print(f"profile rows of {prof.name} ({len(rows)}) moved into {tp.name}")
EOF
  basename "$tp" > "$DEMO/results/.run$i"
}

summary() {
  local r4 r5
  r4=$(cat "$DEMO/results/.run4"); r5=$(cat "$DEMO/results/.run5")
  echo "== the series (images/s, median of the 3 processes, train synthetic)"
  python - "$DEMO/results" <<'EOF'
import sys
from pathlib import Path
import pandas as pd
root = Path(sys.argv[1])
order = [(root / f".run{i}").read_text().strip() for i in range(1, 9) if (root / f".run{i}").exists()]
rows = []
for i, r in enumerate(order, 1):
    t = pd.read_csv(root / r / "throughput.csv")
    t = t[t.status == "ok"]
    for (fw, meas, inp), g in t.groupby(["framework", "measurement", "input"]):
        rows.append({"run": i, "job": f"{fw} {meas} {inp}", "images_per_s": round(g.images_per_s.median(), 1)})
print(pd.DataFrame(rows).pivot(index="job", columns="run", values="images_per_s").to_string())
EOF
  echo "== change points (bench.history)"
  sed -n '/change points: the first run/,/^$/p;/^| step time\|^| peak\|^| saved\|^| final/p' "$DEMO/history/index.md" | head -30
  grep -h "^Change point of\|conv changed most\|changed most" "$DEMO/history/index.md" | head -10 || true
  echo "== compare run 5 against run 4 ($r5 vs $r4)"
  grep -h "^Throughput, this run\|False discovery\|changed most\|No per-layer diff" "$DEMO/compare_4_5/$r5/index.md" \
    | head -10 || true
}

series() {
  for i in $(seq 1 "$RUNS"); do one_run "$i"; done
  set +e
  python -m bench.history --results "$DEMO/results" --out "$DEMO/history" --fail-on-change 5 --change-window "$RUNS"
  echo "bench.history --fail-on-change 5 (window: every run): exit $?"
  python -m bench.history --results "$DEMO/results" --out "$DEMO/history" --fail-on-change 5
  echo "bench.history --fail-on-change 5 (default window, the latest 3 runs): exit $?"
  python -m bench.report "$(cat "$DEMO/results/.run5")" --compare "$(cat "$DEMO/results/.run4")" \
    --results "$DEMO/results" --out "$DEMO/compare_4_5" --fail-on-regression 5
  echo "bench.report run5 --compare run4 --fail-on-regression 5: exit $?"
  set -e
  summary
}

aa() {  # README's A/A (the fourth VM's command) and injected-slowdown checks, with the scipy statistics and BH
  local args=(--suite throughput --models resnet20_v1,plain20 --frameworks torch,keras --keras-backend tensorflow
              --repeats 3 --device cpu --no-report --out "$DEMO/aa") a b c
  python -m bench.run "${args[@]}"; a=$(newest "$DEMO/aa")
  python -m bench.run "${args[@]}"; b=$(newest "$DEMO/aa")
  TWINBENCH_INJECT_SLOWDOWN="torch eager:1.2" python -m bench.run "${args[@]}"; c=$(newest "$DEMO/aa")
  set +e
  python -m bench.report "$(basename "$b")" --compare "$(basename "$a")" --results "$DEMO/aa" --out "$DEMO/aa_report" \
    --fail-on-regression 10; echo "A/A gate at 10%: exit $?"
  python -m bench.report "$(basename "$c")" --compare "$(basename "$b")" --results "$DEMO/aa" --out "$DEMO/inject_report" \
    --fail-on-regression 10; echo "injected torch eager x1.2, gate at 10%: exit $?"
  python -m bench.report "$(basename "$c")" --compare "$(basename "$b")" --results "$DEMO/aa" --out "$DEMO/inject_report" \
    --fail-on-regression 30; echo "injected torch eager x1.2, gate at 30%: exit $?"
  set -e
  for r in aa_report inject_report; do
    echo "== $r: verdicts"
    grep -h "^Throughput, this run against\|False discovery" "$DEMO/$r"/*/index.md
  done
}

case "${1:-series}" in
  series) series ;;
  aa) aa ;;
  summary) summary ;;
  *) echo "usage: $0 [series|aa|summary]" >&2; exit 2 ;;
esac
