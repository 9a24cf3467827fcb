#!/usr/bin/env bash
# The GPU measurements the open issues ask for, in phases sized for a lent GPU machine (the `device`
# tool: 10 minutes a call, 30 minutes a session, a bare machine with no keras and no network).
#
# Here, once:     bash scripts/gpu_session.sh prepare
#                 (wheels of keras, namex, optree into .whl/; the CIFAR-10 stand-in archive, its
#                 build.py and ../shared/anchors into .dev/gpu/; both folders are git-ignored)
# There, a call:  bash scripts/gpu_session.sh PHASE [PHASE ...]       carry: [".whl", ".dev"]
# Here, after:    bash scripts/gpu_session.sh collect FILES_AT/runs.tgz
#                 (unpacks into .dev/gpu/runs, so the next call resumes; copies each run into results/,
#                 where `python -m bench.report RUN_ID` renders it)
#
# Phases, most wanted first when time is short (issue in brackets):
#   peaks        python -m bench.peaks --device cuda --remeasure: each library's GEMM roof in fp32, bf16, fp16
#                (tensor cores) and the HBM bandwidth (STREAM triad, 1 GiB arrays), by the code the CPU roofs use;
#                under a minute. Run it first: every later run of the session records these roofs in its
#                run_meta.json (TWINBENCH_ROOFS points at runs/peaks/roofs.json). Not yet run on a GPU.  [#41]
#   train-torch  resnet20_v1, paper recipe (164 epochs, batch 128), bf16, PyTorch        [#6]
#   reference    ../shared/anchors/train_resnet20.py, same data, bf16 (the yardstick)    [#6]
#   train-keras  the same recipe, the Keras twin on JAX                                  [#6]
#   throughput   throughput suite, resnet20_v1 resnet110_v1 densenet_bc100_k12(+memeff), bf16  [#3]
#   memory       memory suite (batch sweep to the first OOM), the same models            [#3]
#   alloc-peak   the CPU method's allocator peak of a step (alloc_peak_mib: torch's profiler memory events,
#                TensorFlow's BFC peak minus current) beside the GPU allocator peak over timed steps
#                (peak_alloc_mib) for the same memory jobs, at batch 64, every stack; their ratio per job in
#                runs/alloc-peak/relation.txt. Keras on JAX's compile-time figure is left to CPU runs
#                (measure_on_gpu). Written without a GPU: untested there                       [#42]
#   overhead     python -m bench.overhead at batch 128 and 512 (harness vs bare loop)    [#3]
#   bench        pytest --benchmark-only (resnet20_v1, resnet56_v1, densenet_bc100_k12)  [#5]
#   quick        the cifar10-quick suite and its report                                  [#4]
#   anchors      ../shared/anchors/anchors_torch.py --part eager --quick (ratios to ANCHORS.md)
#   profile      the profile suite, the same models: device time per layer, every stack  [#19]
#   aa           the throughput suite twice (resnet20_v1, torch + Keras on JAX), then compared: the A/A
#                false-positive rate on the GPU (bench.report --compare; 0 pairs slower or faster is 0%)  [#20]
#   degradation  optional, long: the degradation suite, paper recipe, 3 seeds, both twins (Keras on JAX): many
#                calls; it resumes call after call                                   [#21]
#
# A 30-minute session, three calls of about 9 minutes (run `collect` after each, then carry again):
#   1. train-torch reference   2. train-keras overhead bench   3. throughput memory (these two are about
#   23 min by `bench.run --dry-run --device cuda`: what the deadline stops resumes in the next call)
# then `quick` in the calls of a later session (about 45 min by `bench.run --dry-run --device cuda`;
# it resumes call after call).
#
# Every phase writes under $GPU_SESSION_ROOT/runs/<phase>/ and resumes there when run again
# (bench.run --resume; a training resumes from its last epoch's checkpoint). The phases share one
# deadline, GPU_SESSION_DEADLINE_S seconds after the start (default 540): a phase still running then
# gets SIGINT and stops cleanly, keeping every finished row. At exit, runs/ is packed into
# $OUT/runs.tgz (the one file the device tool brings back). GPU_SESSION_ARGS is appended to every
# bench.run command line (a rehearsal on a CPU: "--device cpu --models resnet20_v1 --batch-sizes 4").
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
G=${GPU_SESSION_ROOT:-$REPO/.dev/gpu}
RUNS=$G/runs
START=$(date +%s)
DEADLINE=$((START + ${GPU_SESSION_DEADLINE_S:-540}))
EXTRA=${GPU_SESSION_ARGS:-}
PEAKS_ARGS=${PEAKS_ARGS:-}  # e.g. --quick in a CPU rehearsal
MODELS=resnet20_v1,resnet110_v1,densenet_bc100_k12,densenet_bc100_k12_memeff
PY=${PYTHON:-python3}

say() { echo "gpu_session: $*" >&2; }

prepare() {
  mkdir -p "$REPO/.whl" "$G"
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$REPO/.whl" keras==3.15.1 namex==0.1.0 optree==0.20.0 || return 1
  cp ../shared/data/cifar10/cifar10-compact.tar.gz ../shared/data/cifar10/build.py "$G"/ || return 1
  rm -rf "$G/anchors" && cp -r ../shared/anchors "$G/anchors" && chmod -R u+w "$G" || return 1
  du -sh "$REPO/.whl" "$G" >&2
}

collect() {
  local tgz=$1
  [ -f "$tgz" ] || { say "no such file: $tgz"; return 2; }
  mkdir -p "$G" && rm -rf "$RUNS" && tar xzf "$tgz" -C "$G" || return 1
  local results=${GPU_SESSION_RESULTS:-$REPO/results}
  for d in "$RUNS"/*/2*-*/; do
    [ -d "$d" ] && mkdir -p "$results" && cp -r "$d" "$results/" && say "$results/$(basename "$d")"
  done
  return 0
}

setup() {
  # keras is not on the GPU machine: install the carried wheels into /tmp/site (no network there)
  if ! $PY -c "import importlib.util as u; assert u.find_spec('keras')" 2>/dev/null && ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      "$REPO"/.whl/*.whl || return 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-jax}
  if [ -z "${TWINBENCH_DATA_DIR:-}" ]; then
    export TWINBENCH_DATA_DIR=$G/data
    [ -d "$G/data/cifar-10-batches-py" ] || $PY "$G/build.py" "$G/data" >&2 || return 1
  fi
  mkdir -p "$RUNS"
  export TWINBENCH_ROOFS=${TWINBENCH_ROOFS:-$RUNS/peaks/roofs.json}  # the peaks phase's roofs, for every run after it
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null >&2 || say "no nvidia-smi"
}

left() { echo $((DEADLINE - $(date +%s))); }

# bench.run in runs/<phase>/, resuming the run already there; stops cleanly at the deadline
suite() {
  local phase=$1; shift
  local out=$RUNS/$phase prev
  mkdir -p "$out"
  prev=$(ls -d "$out"/2*-* 2>/dev/null | tail -1)
  if [ -n "$prev" ]; then
    timed $PY -m bench.run --resume "$(basename "$prev")" --out "$out" --reports "$out/reports" --no-report
  else
    # shellcheck disable=SC2086
    timed $PY -m bench.run "$@" --out "$out" --reports "$out/reports" --no-report $EXTRA
  fi
}

# a command under the shared deadline: SIGINT when time is up, SIGKILL 20 s later
timed() {
  local t
  t=$(left)
  if [ "$t" -lt 15 ]; then say "skipped (deadline): $*"; return 0; fi
  say "$(date -u +%H:%M:%S) (${t}s left): $*"
  timeout -s INT -k 20 "$t" "$@"
  local rc=$?
  [ $rc -eq 124 ] || [ $rc -eq 130 ] && say "stopped at the deadline; run the phase again to resume"
  return $rc
}

pack() {
  [ -n "${OUT:-}" ] && [ -d "$RUNS" ] || return 0
  mkdir -p "$OUT" && tar czf "$OUT/runs.tgz.tmp" -C "$G" runs && mv "$OUT/runs.tgz.tmp" "$OUT/runs.tgz"
  say "packed $(du -h "$OUT/runs.tgz" | cut -f1) into \$OUT/runs.tgz after $(( $(date +%s) - START )) s"
}

phase() {
  case $1 in
    peaks)
      mkdir -p "$RUNS/peaks"
      # shellcheck disable=SC2086
      timed $PY -m bench.peaks --device "${PEAKS_DEVICE:-cuda}" --remeasure $PEAKS_ARGS \
        | tee -a "$RUNS/peaks/peaks.txt" ;;
    train-torch) suite "$1" --suite train --models resnet20_v1 --frameworks torch --precision bf16 ;;
    train-keras) suite "$1" --suite train --models resnet20_v1 --frameworks keras --keras-backend jax --precision bf16 ;;
    reference)
      mkdir -p "$RUNS/reference"
      timed $PY "$G/anchors/train_resnet20.py" "$TWINBENCH_DATA_DIR/cifar-10-batches-py" "${REFERENCE_EPOCHS:-164}" 128 \
        | tee -a "$RUNS/reference/train_resnet20_bf16.jsonl" ;;
    throughput) suite "$1" --suite throughput --models "$MODELS" --keras-backend jax --precision bf16 ;;
    memory) suite "$1" --suite memory --models "$MODELS" --keras-backend jax ;;
    alloc-peak)
      suite "$1" --suite memory --models resnet20_v1,densenet40_k12* --keras-backend all --batch-sizes 64 || return $?
      local d
      d=$(ls -d "$RUNS/alloc-peak"/2*-* 2>/dev/null | tail -1)
      [ -n "$d" ] && timed $PY - "$d/memory.csv" <<'PYEOF' | tee "$RUNS/alloc-peak/relation.txt" ;;
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
ok = df[(df.status == "ok") & df.depth.isna()] if "depth" in df else df[df.status == "ok"]
cols = ["model", "framework", "backend", "batch_size", "alloc_peak_mib", "alloc_peak_kind", "peak_alloc_mib",
        "params_mib", "grads_mib", "optimizer_state_mib"]
t = ok[[c for c in cols if c in ok]].copy()
t["peak_minus_state_mib"] = t.peak_alloc_mib - t.params_mib - t.optimizer_state_mib  # held before a step
t["alloc_over_gpu_rise"] = t.alloc_peak_mib / t.peak_minus_state_mib
print("alloc_peak_mib (the CPU method, one step) beside peak_alloc_mib (the GPU allocator over timed steps, whole "
      "process): alloc_over_gpu_rise = alloc_peak_mib / (peak_alloc_mib - params - optimizer state)")
print(t.round(2).to_string(index=False))
PYEOF
    overhead)
      mkdir -p "$RUNS/overhead"
      for b in 128 512; do
        timed $PY -m bench.overhead --batch-size $b --precision bf16 | tee -a "$RUNS/overhead/overhead.jsonl"
      done ;;
    bench)
      mkdir -p "$RUNS/bench"
      timed $PY -m pytest -q -p no:cacheprovider tests/test_benchmarks.py --benchmark-only \
        --benchmark-json "$RUNS/bench/benchmark.json" 2>&1 | tee "$RUNS/bench/pytest.txt" ;;
    quick)
      suite "$1" --suite cifar10-quick --keras-backend jax
      local d
      d=$(ls -d "$RUNS/quick"/2*-* 2>/dev/null | tail -1)
      [ -n "$d" ] && timed $PY -m bench.report "$d" --out "$RUNS/quick/report" ;;
    profile) suite "$1" --suite profile --models "$MODELS" --keras-backend jax ;;
    aa)
      suite aa-1 --suite throughput --models resnet20_v1 --keras-backend jax --precision bf16 &&
        suite aa-2 --suite throughput --models resnet20_v1 --keras-backend jax --precision bf16 || return $?
      local one two
      one=$(ls -d "$RUNS/aa-1"/2*-* 2>/dev/null | tail -1) two=$(ls -d "$RUNS/aa-2"/2*-* 2>/dev/null | tail -1)
      [ -n "$one" ] && [ -n "$two" ] && timed $PY -m bench.report "$two" --compare "$one" --out "$RUNS/aa-report" ;;
    degradation) suite "$1" --suite degradation --keras-backend jax ;;
    anchors)
      mkdir -p "$RUNS/anchors"
      timed $PY "$G/anchors/anchors_torch.py" --part eager --quick --out "$RUNS/anchors/anchors_torch.json" ;;
    *) say "unknown phase '$1' (see the top of $0)"; return 2 ;;
  esac
}

case ${1:-} in
  prepare) prepare; exit $? ;;
  collect) collect "${2:?collect needs the path of runs.tgz}"; exit $? ;;
  ""|-h|--help) sed -n '2,40p' "$0"; exit 0 ;;
esac
trap pack EXIT
setup || { say "setup failed"; exit 1; }
status=0
for p in "$@"; do
  phase "$p" || status=$?
done
exit $status
