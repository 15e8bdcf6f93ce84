#!/usr/bin/env bash
# The README's main command: one whole compression job on the embedded
# default, on this machine.
#
#   1. installs the Debian packages (scripts/setup.sh) and builds the binaries;
#   2. generates the synthetic Pile-format corpus (lft-make-corpus);
#   3. pretrains the embedded-default teacher, a GPT-NeoX of 8 layers x 128
#      (lft-pretrain; kept in the work directory and reused by later runs);
#   4. starts lft-store, lft-coordinator, two teacher, two trainer and one
#      evaluator lft-worker processes on loopback;
#   5. submits a compression job for the middle block [2, 6) with lftctl,
#      watches it, pulls the evaluation report and prints its table.
#
# Environment (all optional):
#   LFT_WORK              work directory (default: .lft-default in the repo)
#   LFT_BUILD             build directory (default: build)
#   LFT_SKIP_SETUP=1      do not run scripts/setup.sh
#   LFT_SKIP_BUILD=1      use the binaries already in LFT_BUILD
#   LFT_PRETRAIN_STEPS    teacher pretraining steps (default 400): the budget,
#                         so every machine trains the same teacher
#   LFT_PRETRAIN_SECONDS  a guard, not a budget (default 3600): pretraining
#                         stops there even before LFT_PRETRAIN_STEPS, and the
#                         script then says loudly that its table will differ
#   LFT_CORPUS_DOCUMENTS  synthetic documents for pretraining (default 20000)
#   LFT_TOKENIZER_BYTES   text the BPE tokenizer trains on (default 8000000)
#   LFT_JOB_DOCUMENTS     documents the job extracts (default 1200)
#   LFT_TRAIN_STEPS       flow-layer training steps (default 240)
#   LFT_EVAL_SEQUENCES    held-out sequences scored (default 48)
#   LFT_FRESH=1           delete the corpus and teacher of earlier runs first
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
WORK="${LFT_WORK:-$ROOT/.lft-default}"
BUILD="${LFT_BUILD:-$ROOT/build}"
PRETRAIN_SECONDS="${LFT_PRETRAIN_SECONDS:-3600}"
PRETRAIN_STEPS="${LFT_PRETRAIN_STEPS:-400}"
CORPUS_DOCUMENTS="${LFT_CORPUS_DOCUMENTS:-20000}"
JOB_DOCUMENTS="${LFT_JOB_DOCUMENTS:-1200}"
TOKENIZER_BYTES="${LFT_TOKENIZER_BYTES:-8000000}"
TRAIN_STEPS="${LFT_TRAIN_STEPS:-240}"
EVAL_SEQUENCES="${LFT_EVAL_SEQUENCES:-48}"

say() { printf '\n== %s\n' "$*"; }
seconds_since() { echo $(( $(date +%s) - $1 )); }

if [ "${LFT_SKIP_SETUP:-0}" != 1 ]; then
  say "setup (Debian packages)"
  bash scripts/setup.sh
fi
if [ "${LFT_SKIP_BUILD:-0}" != 1 ]; then
  say "build"
  if [ ! -f "$BUILD/build.ninja" ]; then
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  ninja -C "$BUILD" lft-store lft-coordinator lft-worker lftctl \
    lft-make-corpus lft-pretrain
fi
BIN_STORE="$BUILD/latent-store/lft-store"
BIN_COORD="$BUILD/coordinator/lft-coordinator"
BIN_WORKER="$BUILD/worker/lft-worker"
BIN_CTL="$BUILD/lftctl/lftctl"
for b in "$BIN_STORE" "$BIN_COORD" "$BIN_WORKER" "$BIN_CTL" \
         "$BUILD/common/corpus/lft-make-corpus" "$BUILD/worker/pretrain/lft-pretrain"; do
  [ -x "$b" ] || { echo "run-default-job: missing binary $b (build first)" >&2; exit 2; }
done

START=$(date +%s)
mkdir -p "$WORK"
if [ "${LFT_FRESH:-0}" = 1 ]; then rm -rf "$WORK/corpus" "$WORK/job-corpus" "$WORK/teacher" "$WORK/pretrain.err"; fi

T=$(date +%s)
if [ ! -f "$WORK/corpus/val.jsonl.zst" ]; then
  say "synthetic corpus ($CORPUS_DOCUMENTS documents)"
  "$BUILD/common/corpus/lft-make-corpus" --seed 7 --documents "$CORPUS_DOCUMENTS" \
    --out "$WORK/corpus" --train-shards 4
fi
if [ ! -f "$WORK/job-corpus/train/00.jsonl.zst" ]; then
  # The text the job distils on: fresh documents of the same generator.
  "$BUILD/common/corpus/lft-make-corpus" --seed 8 --documents "$JOB_DOCUMENTS" \
    --out "$WORK/job-corpus" --train-shards 2
fi
CORPUS_S=$(seconds_since "$T")

T=$(date +%s)
if [ ! -f "$WORK/teacher/model.safetensors" ]; then
  say "pretraining the embedded-default teacher (8 x 128, ${PRETRAIN_STEPS} steps)"
  rm -rf "$WORK/teacher.tmp"
  "$BUILD/worker/pretrain/lft-pretrain" --corpus "$WORK/corpus" \
    --out "$WORK/teacher.tmp" --vocab_size 2048 --tokenizer_train_bytes "$TOKENIZER_BYTES" \
    --layers 8 --hidden 128 --heads 4 --seq 128 --batch 16 \
    --steps "$PRETRAIN_STEPS" --warmup 30 --lr 2e-3 \
    --max_seconds "$PRETRAIN_SECONDS" --eval_every 100 --threads 2 \
    2> >(tee "$WORK/pretrain.err" >&2)
  mv "$WORK/teacher.tmp" "$WORK/teacher"
else
  say "teacher: reusing $WORK/teacher (LFT_FRESH=1 retrains it)"
fi
PRETRAIN_S=$(seconds_since "$T")

say "starting lft-store, lft-coordinator and 5 workers on loopback"
RUN="$WORK/run"
rm -rf "$RUN"
mkdir -p "$RUN"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_for() {  # FILE PATTERN SECONDS WHAT
  local deadline=$(( $(date +%s) + $3 ))
  until grep -q "$2" "$1" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "run-default-job: $4 did not start within $3 s; its log:" >&2
      tail -n 20 "${1%.*}.log" >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

"$BIN_STORE" --listen 127.0.0.1:0 --insecure-loopback --db "$RUN/store" --sync=false \
  >"$RUN/store.out" 2>"$RUN/store.log" &
PIDS+=($!)
wait_for "$RUN/store.out" "listening on" 20 lft-store
STORE=$(sed -n 's/^listening on //p' "$RUN/store.out" | head -n 1)

"$BIN_COORD" --db "$RUN/coordinator" --listen 127.0.0.1:0 --insecure-loopback \
  --port-file "$RUN/coordinator.port" --store-address "$STORE" \
  >"$RUN/coordinator.out" 2>"$RUN/coordinator.log" &
PIDS+=($!)
wait_for "$RUN/coordinator.port" "[0-9]" 20 lft-coordinator
COORD="127.0.0.1:$(cut -d' ' -f1 "$RUN/coordinator.port")"

worker() {  # ROLE NAME THREADS
  # OpenBLAS threads on top of LibTorch's oversubscribe the cores and
  # serialise concurrent callers (docs/benchmarks.md, "Trainer").
  OPENBLAS_NUM_THREADS=1 "$BIN_WORKER" --role "$1" --name "$2" --coordinator "$COORD" \
    --insecure-loopback --threads "$3" \
    >"$RUN/$2.out" 2>"$RUN/$2.log" &
  PIDS+=($!)
}
worker teacher teacher-0 1
worker teacher teacher-1 1
worker trainer trainer-0 1
worker trainer trainer-1 1
worker evaluator evaluator-0 2

cat >"$RUN/job.json" <<EOF
{
  "name": "default-2-6",
  "teacher": {"path": "$WORK/teacher", "computeDtype": "float32"},
  "corpus": {"jsonlZstPaths": ["$WORK/job-corpus/train/00.jsonl.zst",
                               "$WORK/job-corpus/train/01.jsonl.zst"],
             "documentsPerShard": 150},
  "block": {"firstLayer": 2, "endLayer": 6},
  "sequenceLength": 128,
  "storageDtype": "STORAGE_DTYPE_BF16",
  "training": {"method": "METHOD_FW", "flowWalkingSteps": 3,
               "solver": "SOLVER_MIDPOINT", "maxSteps": $TRAIN_STEPS,
               "globalBatchSequences": 16, "learningRate": 0.002,
               "warmupSteps": 20, "gradientClipNorm": 1.0,
               "checkpointEverySteps": 50, "trainerRanks": 2, "seed": 1},
  "evaluation": {"steps": [1, 3, 8],
                 "solvers": ["SOLVER_EULER", "SOLVER_MIDPOINT"],
                 "heldoutPaths": ["$WORK/corpus/val.jsonl.zst"],
                 "maxSequences": $EVAL_SEQUENCES, "skipBaselines": 3,
                 "regressionBaseline": true}
}
EOF

T=$(date +%s)
say "submitting the compression job (block [2, 6), FW k=3, 2 trainer ranks)"
JOB=$("$BIN_CTL" --server "$COORD" submit "$RUN/job.json")
echo "job $JOB"
set +e
"$BIN_CTL" --server "$COORD" watch "$JOB"
WATCH=$?
set -e
JOB_S=$(seconds_since "$T")
if [ "$WATCH" != 0 ]; then
  "$BIN_CTL" --server "$COORD" get "$JOB" >&2 || true
  echo "run-default-job: the job did not succeed; logs are in $RUN" >&2
  exit 1
fi

for blob in report.md report.json loss.png kl_vs_k.png; do
  "$BIN_CTL" --store "$STORE" pull "$JOB" "$blob" --out "$RUN/$blob" >/dev/null
done
"$BIN_CTL" --store "$STORE" pull "$JOB" --out "$RUN/flow-checkpoint.safetensors" >/dev/null
say "results (held-out text; from the store's report.md)"
cat "$RUN/report.md"
echo
if grep -q "max-seconds guard" "$WORK/pretrain.err" 2>/dev/null; then
  echo
  echo "WARNING: teacher pretraining hit the LFT_PRETRAIN_SECONDS guard before"
  echo "         $PRETRAIN_STEPS steps ($WORK/pretrain.err): this table differs from the"
  echo "         README's. Rerun with LFT_FRESH=1 and a larger LFT_PRETRAIN_SECONDS."
fi
echo "corpus ${CORPUS_S} s, teacher ${PRETRAIN_S} s, compression job ${JOB_S} s," \
  "total $(seconds_since "$START") s after setup and build."
echo "report, plots (loss.png, kl_vs_k.png), the final checkpoint and logs: $RUN"
echo "(the services stop now; 'lftctl export --teacher $WORK/teacher --checkpoint"
echo " $RUN/flow-checkpoint.safetensors --k 3 --out DIR' makes a plain GPT-NeoX of it)"
