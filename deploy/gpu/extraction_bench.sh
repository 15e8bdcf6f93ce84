#!/usr/bin/env bash
# Extraction at the Pythia-410M shape on the GPU host, in one device call
# (issue 12): builds, then prints side by side
#   (a) HF transformers' truncated forward (tests/bench/hf_forward.py),
#   (b) lft's teacher forward alone,
#   (c) lft extraction into the embedded store (durable: defaults),
#   (d) the same through lft-store over gRPC,
#   (e) (c) and (d) with fp8-e4m3 storage,
#   (c)-(e) again at batch 32 x sequence 512,
#   (f) a plain write + fdatasync on the same disk, by one writer and by
#       four in parallel, before and after the extractions (the fastest is
#       the ceiling),
# and writes the figures to $OUT/extraction-h200.json (copy it to
# docs/benchmarks/). Needs .carry/debs (deploy/gpu/README.md) and
# .carry/corpus/00.jsonl.zst (a copy of ../shared/corpus/train/00.jsonl.zst).
#
#   device: bash deploy/gpu/extraction_bench.sh
# Knobs: DOCS (documents per task, default 400), TASKS (tasks per run,
# default 2), WRITERS_SWEEP (store writers to try over gRPC besides the
# default, default "8 16"; empty to skip), LONG_TASKS (tasks of the long ingest run, 0 = skip; each task
# is ~DOCS documents), DISK_GB (ceiling write size, default 8).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/extraction.log") 2>&1
LFT_BUILD_TARGETS="extraction_throughput lft-store model_teacher_runner_test model_gpu_test model_fused_ops_test" \
  bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
# The on-device encoder bit for bit against the scalar codecs, and the
# teacher against HF-derived fixtures, before any figure is taken.
build-gpu/tests/unit/worker/model_teacher_runner_test --gtest_filter='*Cuda*' 2>&1 | tail -3
# LFT_TEST_SRCDIR: where the HF fixtures are (without it every case skips).
LFT_TEST_SRCDIR=$PWD build-gpu/tests/gpu/model_gpu_test 2>&1 | grep -E "^\[  |Failure" | tail -8
# The fused AdaLN / rotary kernels the flow layer runs (and the teacher's
# rotary): all cases, the CPU stand-in and the CUDA kernels.
build-gpu/tests/unit/worker/model_fused_ops_test 2>&1 | grep -E "^\[  |Failure" | tail -4
B=build-gpu/tests/bench/extraction_throughput
W=${LFT_BENCH_DIR:-/tmp/lft-extraction}
rm -rf "$W" && mkdir -p "$W"
CORPUS=$PWD/.carry/corpus/00.jsonl.zst
DOCS=${DOCS:-400}
TASKS=${TASKS:-2}
T=$W/teacher
JSONL=$OUT/extraction.jsonl
: > "$JSONL"
run() { "$@" | tee -a "$W/lines"; }
keep() { grep '^json ' "$W/lines" | sed 's/^json //' >> "$JSONL"; : > "$W/lines"; }

echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader) commit ${LFT_COMMIT:-unknown}"
$B --mode make-teacher --teacher "$T" --corpus "$CORPUS" || exit 1
echo "== (a) HF transformers"
PYTHONUNBUFFERED=1 run python3 tests/bench/hf_forward.py --teacher "$T"; keep
echo "== (b) lft forward"
for shape in "8 2048" "32 512"; do
  set -- $shape
  run $B --mode forward --teacher "$T" --batch "$1" --seq "$2"; keep
done
# The ceiling: one writer and four in parallel (the store writes several
# files at once), before and again after the extractions, since this
# virtual disk's rate drifts; the summary takes the fastest as the ceiling.
ceiling() {
  echo "== (f) disk ceiling ($1)"
  for writers in 1 4; do
    run $B --mode disk --dir "$W/disk" --bytes $(( ${DISK_GB:-8} << 30 )) \
      --writers "$writers"; keep
  done
}
ceiling before

# CPU seconds (user + system) a process has used: how busy lft-store was.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

extract() {  # codec store(embedded|grpc|grpc2) [tasks] [store writers] [channels] [lft-store flag]
  local codec=$1 where=$2 tasks=${3:-$TASKS} db=$W/store-$1-$2 store_flag=${6:-}
  local writers=()
  [ -n "${4:-}" ] && writers=(--store-writers "$4")
  [ -n "${5:-}" ] && writers+=(--store-channels "$5")
  rm -rf "$db"
  if [ "$where" = grpc ] || [ "$where" = grpc2 ]; then
    local n=1 pids=() addrs=()
    [ "$where" = grpc2 ] && n=2
    for i in $(seq "$n"); do
      build-gpu/latent-store/lft-store --listen 127.0.0.1:0 --db "$db-$i" \
        --insecure-loopback $store_flag > "$W/store$i.out" 2> "$W/store$i.err" &
      pids+=($!)
      for _ in $(seq 100); do grep -q 'listening on' "$W/store$i.out" && break; sleep 0.1; done
      addrs+=("$(sed -n 's/^listening on //p' "$W/store$i.out")")
    done
    local addr
    addr=$(IFS=,; echo "${addrs[*]}")
    # shellcheck disable=SC2086
    run $B --mode extract --teacher "$T" --corpus "$CORPUS" --store "$addr" \
      --codec "$codec" --tasks "$tasks" --documents "$DOCS" "${writers[@]}" ${SHAPE_ARGS:-}
    for i in $(seq "$n"); do
      echo "store $i cpu: $(cpu_s "${pids[$((i - 1))]}") s"
    done
    kill "${pids[@]}"; wait "${pids[@]}"
    for i in $(seq "$n"); do echo "store $i directory: $(du -sb "$db-$i" | cut -f1) bytes"; done
    rm -rf "$db"-*
  else
    # shellcheck disable=SC2086
    run $B --mode extract --teacher "$T" --corpus "$CORPUS" --store-db "$db" \
      --codec "$codec" --tasks "$tasks" --documents "$DOCS" "${writers[@]}" ${SHAPE_ARGS:-}
  fi
  keep
  rm -rf "$db"
}
# The disk's rate moved by up to 40% within one run (1.67 GB/s before the
# extractions, 2.37 after, at 8135b45), so each bf16 row, bound by the
# disk, is followed by a four-writer ceiling of its own; the summary shows
# its ratio to that one beside the ratio to the run's fastest.
adjacent_ceiling() {
  run $B --mode disk --dir "$W/disk" --bytes $(( ${DISK_GB:-8} << 30 )) \
    --writers 4
  sed -i '$ s/"mode": "disk"/"mode": "disk", "adjacent": true/' "$W/lines"
  keep
}
echo "== (c) embedded bf16";  extract bf16 embedded; adjacent_ceiling
echo "== (d) gRPC bf16";      extract bf16 grpc; adjacent_ceiling
echo "== (e) embedded fp8";   extract fp8 embedded
echo "== (e) gRPC fp8";       extract fp8 grpc
# The same four at the issue's second shape (SHAPE_ARGS: extra flags of
# the extract mode; the default shape is 8 x 2048).
for codec in bf16 fp8; do
  for where in embedded grpc; do
    echo "== ($where $codec) at 32 x 512"
    SHAPE_ARGS="--batch 32 --seq 512" extract "$codec" "$where"
    [ "$codec" = bf16 ] && adjacent_ceiling
  done
done
echo "== (d) two lft-store processes, bf16"; extract bf16 grpc2
# Where the one-store gRPC path is bound: every PutPairs on one connection
# (the client before data channels), and more PutPairs in flight than the
# default (TeacherRunnerOptions::store_writers), one store and two.
echo "== (d) gRPC bf16, one connection"; extract bf16 grpc "$TASKS" "" 1
# Payload files without early writeback: every byte of a task reaches the
# disk only at its SyncPairs, after the forward (the layout's first run).
echo "== (d) gRPC bf16, payload writeback off"
extract bf16 grpc "$TASKS" "" "" --payload-writeback-mib=0
sed -i '$ s/"mode": "extract"/"mode": "extract", "variant": "writeback_off"/' "$JSONL"
for w in ${WRITERS_SWEEP-8 16}; do
  echo "== (d) gRPC bf16, $w store writers"; extract bf16 grpc "$TASKS" "$w"
  echo "== (d) two lft-store processes, bf16, $w store writers"; extract bf16 grpc2 "$TASKS" "$w"
done
if [ "${LONG_TASKS:-0}" -gt 0 ]; then
  echo "== long ingest (embedded bf16, $LONG_TASKS tasks)"
  extract bf16 embedded "$LONG_TASKS"
  sed -i '$ s/"mode": "extract"/"mode": "long"/' "$JSONL"
fi
ceiling after
python3 deploy/gpu/extraction_summary.py "$JSONL" "$OUT/extraction-h200.json" \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" \
  "${LFT_COMMIT:-unknown}"
