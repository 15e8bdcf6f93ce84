#!/usr/bin/env bash
# Where a trainer step's time goes on the GPU host (issue 13: profile first):
# builds tests/bench/trainer_throughput, records a Kineto trace of FW k=3
# midpoint steps at width 1024 (sequence 2048 and 512, batch 8) and prints
# deploy/gpu/kernel_profile.py's per-step table for each. Traces stay in
# $OUT (large; not for docs/). BY_OP=1 with LFT_TRAINER_CUDA_GRAPH=0 adds
# kernel time by launching op and autograd node.
#   device: bash deploy/gpu/trainer_profile.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
LFT_BUILD_TARGETS="trainer_throughput" \
  bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader) commit ${LFT_COMMIT:-unknown}"
B=build-gpu/tests/bench/trainer_throughput
# SHAPES: comma-separated "method seq batch" triples.
IFS=, read -ra shapes <<< "${SHAPES:-fw 2048 8,fw 512 8}"
for shape in "${shapes[@]}"; do
  # shellcheck disable=SC2086
  set -- $shape
  $B --device cuda --hidden 1024 --method "$1" --seq "$2" --batch "$3" \
    --steps "${STEPS:-10}" --ranks 1 --peak-tflops "${PEAK:-790}" \
    --profile "$OUT/trace-$1-$2.json" 2>&1 | grep -v "^20[0-9][0-9]-" | grep -v '^json '
  python3 deploy/gpu/kernel_profile.py "$OUT/trace-$1-$2.json" --top "${TOP:-30}" ${BY_OP:+--by-op}
  gzip -f "$OUT/trace-$1-$2.json"
done
