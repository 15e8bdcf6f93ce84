#!/usr/bin/env bash
# One device call: build, GPU + model tests, and the teacher extraction
# benchmark on CUDA (bf16). Logs to $OUT/teacher.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/teacher.log") 2>&1
bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
ctest --test-dir build-gpu -L 'gpu|model' --output-on-failure -j 4
build-gpu/tests/bench/teacher_throughput --device cuda --documents 2000 --batch 32
