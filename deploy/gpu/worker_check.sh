#!/usr/bin/env bash
# One device call: build everything and run the tests of the binaries that
# link LibTorch together with the store, protos and Gloo (teacher, trainer,
# their integration tests), the GPU tests and the model tests.
#   device: bash deploy/gpu/worker_check.sh     (carry .carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/worker_check.log") 2>&1
start=$(date +%s)
bash deploy/gpu/build.sh >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "build took $(( $(date +%s) - start )) s"
source deploy/gpu/env.sh
readelf -d build-gpu/worker/lft-worker | grep NEEDED | head -5
ctest --test-dir build-gpu -L 'gpu|model|trainer|coordinator|store|evaluator' \
  --output-on-failure -j 4 2>&1 | grep -v "^20[0-9][0-9]-" | tail -60
build-gpu/tests/unit/worker/trainer_runner_test --gtest_filter='*Cuda*:*Fifty*' 2>&1 | grep -E "ranks:|cpu vs|OK|FAIL"
echo "done after $(( $(date +%s) - start )) s"
