#!/usr/bin/env bash
# Trainer step time on the GPU host (after deploy/gpu/build.sh): one CUDA
# rank (bf16 autocast) at Pythia-like widths. 2-GPU scaling needs a
# multi-GPU kind: run with --ranks 1,2 there (NCCL).
#   device: bash deploy/gpu/worker_check.sh && bash deploy/gpu/trainer_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source deploy/gpu/env.sh
B=build-gpu/tests/bench/trainer_throughput
RANKS=${RANKS:-1}
for cfg in "512 256" "1024 512"; do
  set -- $cfg
  $B --device cuda --hidden "$1" --seq "$2" --batch 16 --steps 20 --ranks "$RANKS" 2>&1 | grep -v "^20[0-9][0-9]-"
done
