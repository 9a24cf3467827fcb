#!/usr/bin/env bash
# smoke A/B: labels and dirs as args: ab2.sh OUTDIR label1 dir1 label2 dir2 ...; roofs cached (shared file)
set -u
source /work/main/.venv/bin/activate
export TWINBENCH_DATA_DIR=/work/main/data
export TWINBENCH_ROOFS=/work/ab/roofs.json
W=$1; shift; mkdir -p $W
while [ $# -gt 0 ]; do label=$1 dir=$2; shift 2
  t0=$(date +%s.%N)
  (cd "$dir" && PYTHONPATH="$dir" python -m bench.run --suite smoke --out $W/$label-results --reports $W/$label-reports) > $W/$label.log 2>&1; rc=$?
  t1=$(date +%s.%N); python -c "print(f'$label {float($t1)-float($t0):.1f} s rc=$rc')" | tee -a $W/times.txt
done
