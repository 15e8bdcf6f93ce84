#!/usr/bin/env bash
# The store rows of deploy/gpu/extraction_bench.sh alone, for a device call
# with little time left (about 2 minutes with the build): (c) embedded
# bf16, (d) gRPC bf16 through lft-store with its defaults, and the disk
# ceiling with four writers after them. No HF row: compare with the last
# full run in docs/benchmarks/extraction-h200.json. Needs what
# extraction_bench.sh needs (.carry/debs, .carry/corpus/00.jsonl.zst).
# REPEAT=N runs the gRPC row N times (its spread between runs);
# PUT_MESSAGE_MIB="64 ..." adds a gRPC row per value with that
# RemotePairStoreOptions::put_message_bytes (64: one message per batch, as
# before PutPairs sent about one pair per message); SHAPE="32 512" runs
# every row at batch 32 x sequence 512 (default "8 2048"); LONG_TASKS=N
# adds a long ingest of N tasks (5.5 GB each in bf16) embedded and over
# gRPC, whose first and last 10% rates are issue 12's compaction check.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/extraction-quick.log") 2>&1
LFT_BUILD_TARGETS="extraction_throughput lft-store" \
  bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -30 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
B=build-gpu/tests/bench/extraction_throughput
W=${LFT_BENCH_DIR:-/tmp/lft-extraction-quick}
rm -rf "$W" && mkdir -p "$W"
C=$PWD/.carry/corpus/00.jsonl.zst
read -r batch seq_len <<< "${SHAPE:-8 2048}"
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader) commit ${LFT_COMMIT:-unknown}"
$B --mode make-teacher --teacher "$W/t" --corpus "$C" > /dev/null || exit 1
echo "== (c) embedded bf16, $batch x $seq_len"
$B --mode extract --teacher "$W/t" --corpus "$C" --store-db "$W/e" \
  --codec bf16 --tasks 2 --documents 400 --batch "$batch" --seq "$seq_len" |
  grep -v ' INFO '
rm -rf "$W/e"
grpc_row() {  # label, extra flags for the teacher
echo "== (d) gRPC bf16, $1"
build-gpu/latent-store/lft-store --listen 127.0.0.1:0 --db "$W/s" \
  --insecure-loopback > "$W/store.out" 2> "$W/store.err" &
pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$W/store.out" && break; sleep 0.1; done
$B --mode extract --teacher "$W/t" --corpus "$C" \
  --store "$(sed -n 's/^listening on //p' "$W/store.out")" \
  --codec bf16 --tasks 2 --documents 400 --batch "$batch" --seq "$seq_len" \
  "${@:2}" | grep -v ' INFO '
echo "store cpu: $(awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$pid/stat") s"
kill "$pid"; wait "$pid"
echo "store directory: $(du -sb "$W/s" | cut -f1) bytes"
rm -rf "$W/s"
}
for i in $(seq "${REPEAT:-1}"); do grpc_row "run $i"; done
for m in ${PUT_MESSAGE_MIB:-}; do
  grpc_row "put messages of $m MiB" --store-put-message-mib "$m"
done
if [ "${LONG_TASKS:-0}" -gt 0 ]; then
  echo "== long ingest, embedded bf16, $LONG_TASKS tasks"
  $B --mode extract --teacher "$W/t" --corpus "$C" --store-db "$W/e" \
    --codec bf16 --tasks "$LONG_TASKS" --documents 400 --batch "$batch" \
    --seq "$seq_len" | grep -v ' INFO '
  rm -rf "$W/e"
  grpc_row "long ingest, $LONG_TASKS tasks" --tasks "$LONG_TASKS"
fi
echo "== (f) disk ceiling"
$B --mode disk --dir "$W/d" --bytes $((6 << 30)) --writers 4
rm -rf "$W"
