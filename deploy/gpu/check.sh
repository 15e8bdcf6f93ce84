#!/usr/bin/env bash
# One device call: build on the GPU host, run the GPU and model tests, and
# compare lft's GPT-NeoX with HF transformers on a random Pythia-410M-shaped
# model (fp32 and bf16). Everything is logged to $OUT/check.log.
#   device: bash deploy/gpu/check.sh     (carry .carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/check.log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
start=$(date +%s)
bash deploy/gpu/build.sh || exit 1
echo "check.sh: build took $(( $(date +%s) - start )) s"
source deploy/gpu/env.sh
ctest --test-dir build-gpu -L 'gpu|model' --output-on-failure -j 4
python3 tests/gpu/hf_compare.py --lft-dump build-gpu/worker/model/lft-dump-hidden \
  --work /tmp/hf_compare --device cuda
echo "check.sh: done after $(( $(date +%s) - start )) s"
