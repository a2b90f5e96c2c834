#!/usr/bin/env bash
# On a GPU host (torch with CUDA, nvcc, compute-sanitizer; no internet), in one go:
# build with MAX_JOBS=16, run the CUDA tests (both algorithms), compute-sanitizer (memcheck + racecheck)
# over every kernel, the side-by-side CUDA benchmark grid against torch.nn (cuDNN), and a summary
# table at the end. Each phase has a time limit so that the summary always prints. Logs go to $OUT
# (the device tool's folder) or /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FUSEDRNN_CUDA=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ] && export CUDA_HOME=/usr/local/cuda
TEST_LIMIT=${TEST_LIMIT:-240} SANITIZER_LIMIT=${SANITIZER_LIMIT:-90} BENCH_LIMIT=${BENCH_LIMIT:-150}

GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader); echo "$GPU"
start=$(date +%s)

echo "== build"
if $PY setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; then build=ok; else build=FAILED; tail -40 "$LOGS/build.log"; fi
build_s=$(( $(date +%s) - start ))
grep -E "error|warning" "$LOGS/build.log" | grep -v "^ninja" | head -5

tests="not run"; memcheck="not run"; racecheck="not run"; bench="not run"
if [ "$build" = ok ]; then
  echo "== CUDA tests ($(( $(date +%s) - start )) s)"
  xdist=""; $PY -c "import xdist" 2> /dev/null && xdist="-n 16"
  OMP_NUM_THREADS=1 timeout "$TEST_LIMIT" $PY -m pytest -m cuda tests -q -p no:cacheprovider $xdist > "$LOGS/pytest_cuda.log" 2>&1
  [ $? -eq 124 ] && echo "pytest stopped at its ${TEST_LIMIT} s limit"
  tests=$(grep -E "[0-9]+ (passed|failed|skipped|error)" "$LOGS/pytest_cuda.log" | tail -1)
  grep -E "^(FAILED|ERROR)" "$LOGS/pytest_cuda.log" | cut -c1-220 | head -25

  echo "== compute-sanitizer ($(( $(date +%s) - start )) s)"
  if command -v compute-sanitizer > /dev/null; then
    timeout "$SANITIZER_LIMIT" compute-sanitizer --tool memcheck --error-exitcode 9 $PY scripts/cuda_smoke.py > "$LOGS/memcheck.log" 2>&1
    memcheck="exit $? ($(grep -c '^ok' "$LOGS/memcheck.log") cases ok, $(grep -c '^FAIL' "$LOGS/memcheck.log") wrong; $(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOGS/memcheck.log" | tail -1))"
    timeout "$SANITIZER_LIMIT" compute-sanitizer --tool racecheck --kernel-name kns=fusedrnn --error-exitcode 9 $PY scripts/cuda_smoke.py --quick > /tmp/racecheck.log 2>&1
    racecheck="exit $? ($(grep -c '^ok' /tmp/racecheck.log) cases ok; $(grep -Eo 'RACECHECK SUMMARY: [0-9]+ hazards?[^)]*|ERROR SUMMARY: [0-9]+ errors?' /tmp/racecheck.log | tail -1))"
    (echo "== racecheck"; cat /tmp/racecheck.log) >> "$LOGS/memcheck.log"
    grep -E "^FAIL|Invalid|Error|Hazard" "$LOGS/memcheck.log" | head -8
  else
    memcheck="compute-sanitizer not found"; racecheck="$memcheck"
  fi

  echo "== benchmark: fused vs torch.nn/cuDNN, same weights and inputs ($(( $(date +%s) - start )) s)"
  mkdir -p "$LOGS/bench"
  timeout "$BENCH_LIMIT" $PY -m fusedrnn.bench --device cuda --repeats 10 \
      --out "$LOGS/bench" > "$LOGS/bench.log" 2>&1 && bench=ok || bench="FAILED (exit $?)"
  [ "$bench" = ok ] || tail -5 "$LOGS/bench.log"
fi

echo
echo "== summary ($GPU, $(( $(date +%s) - start )) s)"
echo "| check | result |"
echo "|---|---|"
echo "| build (${build_s} s) | $build |"
echo "| pytest -m cuda | ${tests:-no summary line} |"
echo "| memcheck | $memcheck |"
echo "| racecheck | $racecheck |"
echo "| benchmark | $bench |"
head -1 "$LOGS/bench.log" 2> /dev/null
[ -f "$LOGS/bench/cuda.json" ] && $PY -m fusedrnn.bench.report "$LOGS/bench/cuda.json" \
  | sed 's/inference/inf/; s/training/train/; s/bfloat16/bf16/; s/float32/fp32/; s/persistent/pers/' 
[ "$build" = ok ] && ! grep -qE "[0-9]+ failed" "$LOGS/pytest_cuda.log"
