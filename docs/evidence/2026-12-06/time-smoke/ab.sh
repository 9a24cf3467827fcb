#!/usr/bin/env bash
# smoke A/B: new (main HEAD) first run (roofs measured), base 9bfdb8e, new again (roofs cached); alone on the machine
set -u
source /work/main/.venv/bin/activate
export TWINBENCH_DATA_DIR=/work/main/data
W=/work/ab; rm -rf $W; mkdir -p $W
export TWINBENCH_ROOFS=$W/roofs.json
timed() { local label=$1 dir=$2; shift 2; local t0=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir" python -m bench.run "$@") > $W/$label.log 2>&1; local rc=$?
  local t1=$(date +%s.%N); python -c "print(f'$label {float($t1)-float($t0):.1f} s rc=$rc')" | tee -a $W/times.txt; }
timed new1 /work/main --suite smoke --out $W/new-results --reports $W/new-reports
timed base /work/base --suite smoke --out $W/base-results --reports $W/base-reports
timed new2 /work/main --suite smoke --out $W/new-results --reports $W/new-reports
