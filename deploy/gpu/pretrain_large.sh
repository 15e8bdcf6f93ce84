#!/usr/bin/env bash
# One device call after check.sh (same warm machine, build-gpu/ kept):
# pretrains a 24-layer, 512-wide GPT-NeoX on the corpus shards carried in
# .carry/corpus (train/*.jsonl.zst + val.jsonl.zst), then checks that HF
# transformers loads it with the same logits. Logs to $OUT/pretrain.log.
#   device: SECONDS_BUDGET=420 bash deploy/gpu/pretrain_large.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/pretrain.log") 2>&1
source deploy/gpu/env.sh
[ -x build-gpu/worker/pretrain/lft-pretrain ] || bash deploy/gpu/build.sh || exit 1
build-gpu/worker/pretrain/lft-pretrain --corpus .carry/corpus --out /tmp/teacher-24x512 \
  --vocab_size 16384 --tokenizer_train_bytes 30000000 --layers 24 --hidden 512 --heads 8 \
  --seq 512 --batch 32 --steps 4000 --warmup 200 --lr 6e-4 --max_seconds "${SECONDS_BUDGET:-420}" \
  --eval_every 500 --heldout_sequences 128 --device cuda || exit 1
python3 tests/gpu/hf_check_teacher.py --teacher /tmp/teacher-24x512 \
  --lft-dump build-gpu/worker/model/lft-dump-hidden --device cuda
cp /tmp/teacher-24x512/config.json "$OUT/teacher-24x512-config.json"
