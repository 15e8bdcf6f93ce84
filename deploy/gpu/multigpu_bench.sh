#!/usr/bin/env bash
# Several GPUs of one host (issue 17), in one device call on nvidia-h200-x2
# or a larger kind. Builds, then:
#   1. NCCL equivalence: TwoCudaRanksFollowOneCudaRankThroughNccl (two GPUs
#      with global batch B against one GPU with B, 50 FW steps; the test
#      states its bf16 tolerance) and the NCCL collective test;
#   2. scaling: tests/bench/trainer_throughput --scaling weak, FW k = 3
#      midpoint at width 1024, sequence 2048, 8 sequences per GPU, for 1, 2,
#      4, 8 GPUs (as many as the host has); efficiency = tokens/s(N) /
#      (N x tokens/s(1));
#   3. a whole job on the host: a Pythia-410M-shaped random teacher
#      (extraction_throughput --mode make-teacher), one lft-store per GPU
#      (its own directory; the coordinator shards pairs over them), one
#      teacher and one trainer worker per GPU, block [6, 18), sequence 2048,
#      bf16; extraction tokens/s of the job against one GPU extracting into
#      one lft-store (extraction_throughput --mode extract) in the same run;
#   4. the fault: the same job again, trainer rank on the last GPU killed
#      with SIGKILL after the step-20 checkpoint and replaced by a fresh
#      worker on that GPU; recovery seconds from the coordinator's
#      lft_coordinator_trainer_recovery_seconds; the final weights against
#      the uninterrupted job's (max abs difference).
# Writes $OUT/multigpu-h200.json (copy it to docs/benchmarks/) and
# $OUT/multigpu.log. Needs .carry/debs and .carry/corpus/00.jsonl.zst (as
# deploy/gpu/extraction_bench.sh).
#   device (kind nvidia-h200-x2): bash deploy/gpu/multigpu_bench.sh
# Knobs: STEPS (bench steps, default 20), JOB_STEPS (job training steps,
# default 60), DOCS (documents per extraction task, default 40).
#
# REHEARSAL=1 runs parts 3 and 4 on the CPU with the binaries in build/
# and the README's default teacher (.lft-default/, made by
# scripts/run-default-job.sh): two "GPUs" are two Gloo ranks, block [2, 6),
# sequence 128. It checks the orchestration (stores, workers, the kill and
# replacement, the metric, the weight comparison) where no GPU is:
#   REHEARSAL=1 OUT=/tmp/mg bash deploy/gpu/multigpu_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/multigpu.log") 2>&1
REHEARSAL=${REHEARSAL:-0}
if [ "$REHEARSAL" = 1 ]; then
  BIN=build
  GPUS=2
  DEV=cpu
  SEQ=128 BATCH_PER_GPU=4 BLOCK_M=2 BLOCK_N=6
  T=$PWD/.lft-default/teacher
  CORPUS=$PWD/.lft-default/job-corpus/train/00.jsonl.zst
  HELDOUT=$PWD/.lft-default/corpus/val.jsonl.zst
  PY=python3
  [ -f "$T/model.safetensors" ] || { echo "multigpu_bench: REHEARSAL=1 needs $T (run scripts/run-default-job.sh once)" >&2; exit 2; }
  echo "== $(date -u +%FT%TZ) rehearsal on the CPU: 2 Gloo ranks"
else
  BIN=build-gpu
  DEV=cuda
  SEQ=2048 BATCH_PER_GPU=8 BLOCK_M=6 BLOCK_N=18
  LFT_BUILD_TARGETS="trainer_throughput extraction_throughput trainer_runner_test gpu_nccl_collective_test lft-store lft-coordinator lft-worker lftctl" \
    bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
  # shellcheck disable=SC1091
  source deploy/gpu/env.sh
  PY=/opt/torch/.venv/bin/python3
  [ -x "$PY" ] || PY=python3
  GPUS=$(nvidia-smi --list-gpus | wc -l)
  echo "== $(date -u +%FT%TZ) ${GPUS} x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1) commit ${LFT_COMMIT:-unknown}"
  if [ "$GPUS" -lt 2 ]; then
    echo "multigpu_bench: this host has $GPUS GPU; run it on nvidia-h200-x2 or larger" >&2
    exit 2
  fi
fi
W=/tmp/lft-multigpu
rm -rf "$W" && mkdir -p "$W"
JSONL=$OUT/multigpu.jsonl
: > "$JSONL"
EQ_DIFF='' EQ_PASSED=false ONE_GPU_TPS=''
if [ "$REHEARSAL" != 1 ]; then

echo "== 1. NCCL equivalence"
build-gpu/tests/gpu/gpu_nccl_collective_test 2>&1 | grep -E '^\[  |Failure' | tail -3
LFT_TEST_SRCDIR=$PWD build-gpu/tests/unit/worker/trainer_runner_test \
  --gtest_filter='*TwoCudaRanks*' 2>&1 | tee "$W/equivalence.txt" | grep -E '^\[  |Failure|CUDA ranks|Which|Expected' | tail -8
EQ_DIFF=$(sed -n 's/.*max abs weight diff \([0-9.e+-]*\),.*/\1/p' "$W/equivalence.txt" | tail -1)
EQ_PASSED=$(grep -q '^\[  PASSED  \] 1 test' "$W/equivalence.txt" && echo true || echo false)

echo "== 2. scaling (weak: 8 sequences of 2048 per GPU)"
RANKS=1
for n in 2 4 8; do [ "$n" -le "$GPUS" ] && RANKS="$RANKS,$n"; done
build-gpu/tests/bench/trainer_throughput --device cuda --hidden 1024 --method fw \
  --seq 2048 --batch 8 --steps "${STEPS:-20}" --ranks "$RANKS" --scaling weak 2>&1 \
  | grep -v "^20[0-9][0-9]-.*INFO" | tee "$W/scaling.txt"
grep '^json ' "$W/scaling.txt" | sed 's/^json //' >> "$JSONL"

CORPUS=$PWD/.carry/corpus/00.jsonl.zst
HELDOUT=$CORPUS
T=$W/teacher
EX=build-gpu/tests/bench/extraction_throughput
$EX --mode make-teacher --teacher "$T" --corpus "$CORPUS" > "$W/make-teacher.txt" 2>&1 || { tail "$W/make-teacher.txt"; exit 1; }
fi

echo "== 3. a whole job on $GPUS ${DEV} devices"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
wait_for() {  # FILE PATTERN SECONDS
  local deadline=$(( $(date +%s) + $3 ))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -ge "$deadline" ] && { echo "multigpu_bench: $1 has no '$2' after $3 s" >&2; return 1; }
    sleep 0.2
  done
}
start_store() {  # DIR -> prints its address
  $BIN/latent-store/lft-store --listen 127.0.0.1:0 --db "$1" --insecure-loopback \
    > "$1.out" 2> "$1.err" &
  PIDS+=($!)
  wait_for "$1.out" "listening on" 30 || exit 1
  sed -n 's/^listening on //p' "$1.out" | head -1
}

if [ "$REHEARSAL" != 1 ]; then
  # One GPU, one store: the figure the job is compared with.
  ONE=$(start_store "$W/one-store")
  $EX --mode extract --teacher "$T" --corpus "$CORPUS" --store "$ONE" --codec bf16 \
    --tasks 2 --documents "${DOCS:-40}" 2>&1 | grep -v INFO | tee "$W/one-gpu.txt"
  ONE_GPU_TPS=$(grep '^json ' "$W/one-gpu.txt" | tail -1 | sed 's/^json //' | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens_per_second"])')
fi

run_job() {  # NAME KILL(0|1) -> $W/NAME/{job.txt,final.safetensors,metrics.txt}
  local name=$1 kill_rank=$2 R=$W/$1
  mkdir -p "$R"
  local stores=()
  for i in $(seq 0 $((GPUS - 1))); do stores+=("$(start_store "$R/store-$i")"); done
  local store_list
  store_list=$(IFS=,; echo "${stores[*]}")
  $BIN/coordinator/lft-coordinator --db "$R/coordinator" --listen 127.0.0.1:0 \
    --insecure-loopback --port-file "$R/coordinator.port" --metrics-port 0 \
    --store-address "$store_list" --lease-ms 4000 --heartbeat-interval-ms 1000 \
    > "$R/coordinator.out" 2> "$R/coordinator.err" &
  PIDS+=($!)
  wait_for "$R/coordinator.port" "[0-9]" 30 || exit 1
  local coord metrics_port
  coord="127.0.0.1:$(cut -d' ' -f1 "$R/coordinator.port")"
  metrics_port=$(cut -d' ' -f2 "$R/coordinator.port")
  worker() {  # ROLE NAME INDEX
    local device=cpu
    [ "$DEV" = cuda ] && device="cuda:$3"
    OPENBLAS_NUM_THREADS=1 $BIN/worker/lft-worker --role "$1" --name "$2" --device "$device" \
      --threads 1 --coordinator "$coord" --insecure-loopback > "$R/$2.out" 2> "$R/$2.err" &
    PIDS+=($!)
    eval "PID_${2//-/_}=$!"
  }
  for i in $(seq 0 $((GPUS - 1))); do
    worker teacher "teacher-$i" "$i"
    worker trainer "trainer-$i" "$i"
  done
  worker evaluator evaluator-0 0
  cat > "$R/job.json" <<EOF
{
  "name": "multigpu-$name",
  "teacher": {"path": "$T"},
  "corpus": {"jsonlZstPaths": ["$CORPUS"], "documentsPerShard": ${DOCS:-40}},
  "block": {"firstLayer": $BLOCK_M, "endLayer": $BLOCK_N},
  "sequenceLength": $SEQ,
  "storageDtype": "STORAGE_DTYPE_BF16",
  "training": {"method": "METHOD_FW", "flowWalkingSteps": 3,
               "solver": "SOLVER_MIDPOINT", "maxSteps": ${JOB_STEPS:-60},
               "globalBatchSequences": $((BATCH_PER_GPU * GPUS)), "learningRate": 0.0003,
               "warmupSteps": 10, "gradientClipNorm": 1.0,
               "checkpointEverySteps": 20, "trainerRanks": $GPUS, "seed": 1},
  "evaluation": {"steps": [3], "solvers": ["SOLVER_MIDPOINT"],
                 "heldoutPaths": ["$HELDOUT"], "maxSequences": 8,
                 "skipBaselines": 0, "regressionBaseline": false}
}
EOF
  local job
  job=$($BIN/lftctl/lftctl --server "$coord" submit "$R/job.json") || { cat "$R/coordinator.err" | tail; return 1; }
  echo "job $job ($name)"
  # Poll the job: phase times, extraction tokens, and (kill run) the kill.
  local killed=0 start
  start=$(date +%s)
  : > "$R/states.txt"
  while true; do
    $BIN/lftctl/lftctl --server "$coord" get "$job" --json > "$R/job.json.now" 2>/dev/null || true
    local line
    line=$(python3 - "$R/job.json.now" <<'PY'
import json, sys, time
try:
    j = json.load(open(sys.argv[1]))
except Exception:
    print("? 0 0"); sys.exit()
tokens = 0
for p in j.get("progress", []):
    if p.get("phase") == "JOB_STATE_EXTRACTING" and p.get("unit") == "tokens":
        tokens = int(p.get("unitsDone", 0))
print(j.get("state", "?"), tokens, j.get("latestStep", 0))
PY
)
    echo "$(date +%s.%N) $line" >> "$R/states.txt"
    set -- $line
    case "$1" in JOB_STATE_SUCCEEDED|JOB_STATE_FAILED|JOB_STATE_CANCELLED) break ;; esac
    if [ "$kill_rank" = 1 ] && [ "$killed" = 0 ] && [ "${3:-0}" -ge 25 ]; then
      local last=$((GPUS - 1)) var="PID_trainer_$((GPUS - 1))"
      echo "kill -9 trainer-$last at step $3"
      kill -9 "${!var}"
      worker trainer "trainer-$last-replacement" "$last"
      killed=1
    fi
    if [ $(( $(date +%s) - start )) -gt 540 ]; then
      echo "multigpu_bench: job $job still $1 after 540 s" >&2; break
    fi
    sleep 0.5
  done
  $BIN/lftctl/lftctl --server "$coord" get "$job" | tee "$R/job.txt"
  curl -s "http://127.0.0.1:$metrics_port/metrics" > "$R/metrics.txt" 2>/dev/null || true
  $BIN/lftctl/lftctl --server "$coord" pull "$job" --out "$R/final.safetensors" > /dev/null || true
  cleanup
  PIDS=()
}
run_job whole 0
run_job killed 1

$PY - "$W" "$JSONL" "$OUT/multigpu-h200.json" "$GPUS" "$ONE_GPU_TPS" \
  "${EQ_DIFF:-}" "$EQ_PASSED" "$REHEARSAL" <<'PY'
import datetime, json, os, re, subprocess, sys
w, jsonl, out, gpus, one_gpu, eq_diff, eq_passed, rehearsal = sys.argv[1:9]
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
def phase_rate(name):
    """Extraction tokens/s of a job: tokens at the last EXTRACTING sample
    over the time from the first sample to it."""
    samples = [l.split() for l in open(os.path.join(w, name, "states.txt"))]
    ext = [(float(t), int(tok)) for t, st, tok, _ in samples if st == "JOB_STATE_EXTRACTING"]
    if len(ext) < 2:
        return None
    return (ext[-1][1] - ext[0][1]) / (ext[-1][0] - ext[0][0])
def recovery(name):
    text = open(os.path.join(w, name, "metrics.txt")).read() if os.path.exists(os.path.join(w, name, "metrics.txt")) else ""
    s = re.search(r"^lft_coordinator_trainer_recovery_seconds_sum (\S+)", text, re.M)
    c = re.search(r"^lft_coordinator_trainer_recovery_seconds_count (\S+)", text, re.M)
    return float(s.group(1)) / float(c.group(1)) if s and c and float(c.group(1)) > 0 else None
def load_safetensors(path):
    """name -> list of floats (F32, F16, BF16), with the standard library
    only (the CPU rehearsal has no numpy)."""
    import array, struct
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = data[base + a:base + b]
        if t["dtype"] == "F32":
            v = array.array("f", raw).tolist()
        elif t["dtype"] == "F16":
            v = list(struct.unpack("<%de" % (len(raw) // 2), raw))
        elif t["dtype"] == "BF16":
            h = array.array("H", raw)
            v = array.array("f", array.array("I", [x << 16 for x in h]).tobytes()).tolist()
        else:
            continue
        out[name] = v
    return out
def weight_diff():
    try:
        a = load_safetensors(os.path.join(w, "whole", "final.safetensors"))
        b = load_safetensors(os.path.join(w, "killed", "final.safetensors"))
        if set(a) != set(b) or not a:
            print("weight comparison: the checkpoints hold different tensors")
            return None
        return max(max((abs(x - y) for x, y in zip(a[k], b[k])), default=0.0)
                   for k in a)
    except Exception as e:
        print("weight comparison failed:", e)
        return None
commit = os.environ.get("LFT_COMMIT", "unknown")
gpu = ("cpu rehearsal (2 Gloo ranks)" if rehearsal == "1" else
       subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                      capture_output=True, text=True).stdout.splitlines()[0])
result = {
    "date": datetime.date.today().isoformat(),
    "gpu": gpu, "commit": commit, "gpus_on_host": int(gpus),
    "gpus": [r["ranks"] for r in rows],
    "tokens_per_second": [r["tokens_per_second"] for r in rows],
    "efficiency": [r["efficiency"] for r in rows],
    "mfu": [r["mfu"] for r in rows],
    "nccl_equivalence_max_weight_diff": float(eq_diff) if eq_diff else None,
    "nccl_equivalence_test_passed": eq_passed == "true",
    "job_extraction_tokens_per_second": phase_rate("whole"),
    "one_gpu_extraction_tokens_per_second": float(one_gpu) if one_gpu else None,
    "recovery_seconds": recovery("killed"),
    "killed_vs_whole_max_weight_diff": weight_diff(),
}
if result["job_extraction_tokens_per_second"] and result["one_gpu_extraction_tokens_per_second"]:
    result["job_extraction_vs_one_gpu"] = (result["job_extraction_tokens_per_second"] /
                                          result["one_gpu_extraction_tokens_per_second"])
json.dump(result, open(out, "w"), indent=2)
print(json.dumps(result, indent=2))
PY
