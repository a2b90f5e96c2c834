#!/usr/bin/env bash
# On a GPU host (torch with CUDA, nvcc, compute-sanitizer; no internet), in one go:
# build with MAX_JOBS=16, run the CUDA tests, compute-sanitizer (memcheck + racecheck) over every
# kernel, a quick side-by-side benchmark against torch.nn (cuDNN), and a summary table at the end.
# Logs go to $OUT (the device tool's folder) or /tmp/gpu_check.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${OUT:-/tmp/gpu_check}
mkdir -p "$LOGS"
PY=${PYTHON:-python3}
export MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FUSEDRNN_CUDA=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ] && export CUDA_HOME=/usr/local/cuda

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$LOGS/gpu.txt"
start=$(date +%s)

echo "== build"
if $PY setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; then build=ok; else build=FAILED; tail -40 "$LOGS/build.log"; fi
build_s=$(( $(date +%s) - start ))

tests="not run"; memcheck="not run"; racecheck="not run"; bench="not run"
if [ "$build" = ok ]; then
  echo "== CUDA tests"
  $PY -m pytest -m cuda tests -q -p no:cacheprovider > "$LOGS/pytest_cuda.log" 2>&1
  tests=$(grep -E "[0-9]+ (passed|failed|skipped|error)" "$LOGS/pytest_cuda.log" | tail -1)
  grep -E "^(FAILED|ERROR)" "$LOGS/pytest_cuda.log" | head -20

  echo "== compute-sanitizer"
  if command -v compute-sanitizer > /dev/null; then
    compute-sanitizer --tool memcheck --error-exitcode 9 $PY scripts/cuda_smoke.py > "$LOGS/memcheck.log" 2>&1
    memcheck="exit $? ($(grep -c '^FAIL' "$LOGS/memcheck.log") wrong results; $(grep -Eo 'ERROR SUMMARY: [0-9]+ errors?' "$LOGS/memcheck.log" | tail -1))"
    compute-sanitizer --tool racecheck --kernel-name regex:step_kernel --error-exitcode 9 $PY scripts/cuda_smoke.py > "$LOGS/racecheck.log" 2>&1
    racecheck="exit $? ($(grep -Eo 'RACECHECK SUMMARY: [0-9]+ hazards?[^)]*|ERROR SUMMARY: [0-9]+ errors?' "$LOGS/racecheck.log" | tail -1))"
    tail -3 "$LOGS/memcheck.log" "$LOGS/racecheck.log"
  else
    memcheck="compute-sanitizer not found"; racecheck="$memcheck"
  fi

  echo "== quick benchmark (fused vs torch.nn/cuDNN, same weights and inputs)"
  $PY -m fusedrnn.bench --device cuda --cells lstm,gru --dtypes float32,bfloat16 --seq 128 --batch 1,64 \
      --hidden 256,1024 --repeats 10 > "$LOGS/bench.log" 2>&1 && bench=ok || bench=FAILED
fi

echo
echo "== summary ($(cat "$LOGS/gpu.txt"), $(( $(date +%s) - start )) s)"
echo "| check | result |"
echo "|---|---|"
echo "| build (${build_s} s) | $build |"
echo "| pytest -m cuda | ${tests:-no summary line} |"
echo "| memcheck | $memcheck |"
echo "| racecheck | $racecheck |"
echo "| benchmark | $bench |"
grep "^|" "$LOGS/bench.log" 2>/dev/null
[ "$build" = ok ] && ! grep -qE "[0-9]+ failed" "$LOGS/pytest_cuda.log"
