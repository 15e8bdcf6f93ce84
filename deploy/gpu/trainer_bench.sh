#!/usr/bin/env bash
# Trainer throughput and MFU on the GPU host, in one device call (issue 13):
# builds, runs the GPU tests of the trainer and the latent codecs, then
# tests/bench/trainer_throughput at width 1024 (a Pythia-410M layer) on one
# CUDA rank (bf16 autocast): FW k=3 midpoint at sequence 2048 and 512
# (batch 8), SFM and the regression baseline at 2048, and FW at 2048 with
# the pairs read through an lft-store process over loopback gRPC (the
# trainer task of a job: TrainerRunner, RemotePairStore; job_* fields); the
# bf16 matmul peak is measured in the same run; then a Kineto profile of
# the FW rows (deploy/gpu/kernel_profile.py). Writes $OUT/trainer-h200.json
# (copy it to docs/benchmarks/). 2-GPU scaling needs a multi-GPU kind:
# RANKS=1,2 there. QUICK=1: the embedded FW rows only; JOB_ONLY=1: FW at
# 2048 and 512 and the job row's A/B (scan streams, HTTP/2 window).
#   device: bash deploy/gpu/trainer_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/trainer.log") 2>&1
LFT_BUILD_TARGETS="trainer_throughput trainer_runner_test model_teacher_runner_test model_fused_ops_test model_gpu_test lft-store" \
  bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader) commit ${LFT_COMMIT:-unknown}"
LFT_TEST_SRCDIR=$PWD build-gpu/tests/unit/worker/trainer_runner_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure|Which' | tail -5
build-gpu/tests/unit/worker/model_teacher_runner_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure' | tail -3
LFT_TEST_SRCDIR=$PWD build-gpu/tests/gpu/model_gpu_test 2>&1 | grep -E '^\[  |Failure' | tail -8
build-gpu/tests/unit/worker/model_fused_ops_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure|Expected|Which|max diff|parameter' | tail -30
B=build-gpu/tests/bench/trainer_throughput
RANKS=${RANKS:-1}
STEPS=${STEPS:-20}
JSONL=$OUT/trainer.jsonl
: > "$JSONL"
row() {  # method seq batch [extra flags]
  local m=$1 q=$2 b=$3; shift 3
  # Clocks and load before the row: a shared or throttled GPU shows here.
  nvidia-smi --query-gpu=utilization.gpu,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
  $B --device cuda --hidden 1024 --method "$m" --seq "$q" --batch "$b" \
    --steps "$STEPS" --ranks "$RANKS" ${PEAK:+--peak-tflops "$PEAK"} "$@" 2>&1 \
    | grep -v "^20[0-9][0-9]-.*INFO.*\(store\|trainer\)" | tee "$OUT/row.txt"
  grep '^json ' "$OUT/row.txt" | sed 's/^json //' >> "$JSONL"
  # Measure the peak once, then reuse it.
  PEAK=${PEAK:-$(grep -o '"peak_bf16_tflops": [0-9.]*' "$OUT/row.txt" | head -1 | awk '{print $2}')}
}
# LFT_FUSED_KERNELS=0: the same step with LibTorch's stock kernels for the
# AdaLN modulation, gates and rotary (the A/B of worker/kernels).
# The trainer task of a job: pairs from a fresh lft-store over gRPC.
# Extra flags go to the bench; LFT_GRPC_STREAM_WINDOW_MIB in the caller's
# environment reaches both ends (common/rpc/channel.h).
job_row() {
  local W
  W=$(mktemp -d)
  build-gpu/latent-store/lft-store --listen 127.0.0.1:0 --db "$W/store" \
    --insecure-loopback > "$W/store.out" 2> "$W/store.err" &
  local pid=$!
  for _ in $(seq 100); do grep -q 'listening on' "$W/store.out" && break; sleep 0.1; done
  row fw 2048 8 --store-address "$(sed -n 's/^listening on //p' "$W/store.out")" "$@"
  kill $pid; wait $pid; rm -rf "$W"
}
row fw 2048 8
if [ -n "${JOB_ONLY:-}" ]; then
  # The job row's A/B alone: the defaults twice (its run-to-run spread),
  # one scan stream, and one stream with gRPC's stock HTTP/2 window (the
  # reader before scan streams and bulk settings).
  job_row; job_row
  job_row --store-scan-streams 1
  LFT_GRPC_STREAM_WINDOW_MIB=0 job_row --store-scan-streams 1
  row fw 512 8
else
LFT_FUSED_KERNELS=0 row fw 2048 8
row fw 512 8
LFT_FUSED_KERNELS=0 row fw 512 8
if [ -z "${QUICK:-}" ]; then
LFT_TRAINER_CUDA_GRAPH=0 row fw 2048 8
LFT_TRAINER_CUDA_GRAPH=0 row fw 512 8
row sfm 2048 8
row regression 2048 8
job_row
job_row
LFT_GRPC_STREAM_WINDOW_MIB=0 job_row --store-scan-streams 1
fi
fi
for q in ${PROFILE_SEQS:-2048 512}; do
  $B --device cuda --hidden 1024 --method fw --seq $q --batch 8 --steps 10 \
    --ranks 1 --peak-tflops "$PEAK" --profile "$OUT/trace-$q.json" > /dev/null 2>&1
  python3 deploy/gpu/kernel_profile.py "$OUT/trace-$q.json" --top 25 | tee "$OUT/profile-$q.txt"
  rm -f "$OUT/trace-$q.json"
done
python3 - "$JSONL" "$OUT/trainer-h200.json" \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" "${LFT_COMMIT:-unknown}" <<'PY'
import datetime, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(method, seq, batch, store="embedded", graph=True):
    for r in rows:
        if (r["method"] == method and r["seq"] == seq and r["batch"] == batch
                and r["ranks"] == 1 and r.get("store", "embedded") == store
                and r.get("cuda_graph", True) == graph):
            return r
    return {}
fw2048, fw512 = pick("fw", 2048, 8), pick("fw", 512, 8)
out = {
    "date": datetime.date.today().isoformat(), "gpu": sys.argv[3], "commit": sys.argv[4],
    "peak_bf16_tflops": fw2048.get("peak_bf16_tflops"),
    "fw3_midpoint_s2048_tokens_per_second": fw2048.get("tokens_per_second"),
    "fw3_midpoint_s2048_mfu": fw2048.get("mfu"),
    "fw3_midpoint_s512_b8_tokens_per_second": fw512.get("tokens_per_second"),
    "fw3_midpoint_s512_b8_mfu": fw512.get("mfu"),
    "sfm_s2048_tokens_per_second": pick("sfm", 2048, 8).get("tokens_per_second"),
    "sfm_s2048_mfu": pick("sfm", 2048, 8).get("mfu"),
    "regression_s2048_tokens_per_second": pick("regression", 2048, 8).get("tokens_per_second"),
    "regression_s2048_mfu": pick("regression", 2048, 8).get("mfu"),
    "fw3_midpoint_s2048_eager_tokens_per_second": pick("fw", 2048, 8, graph=False).get("tokens_per_second"),
    "fw3_midpoint_s512_b8_eager_tokens_per_second": pick("fw", 512, 8, graph=False).get("tokens_per_second"),
    # The trainer task as in a job: pairs from lft-store over gRPC.
    "job_tokens_per_second": pick("fw", 2048, 8, "grpc").get("tokens_per_second"),
    "job_input_wait_fraction": pick("fw", 2048, 8, "grpc").get("input_wait_fraction"),
    "job_input_prefetch_fraction": pick("fw", 2048, 8, "grpc").get("input_prefetch_fraction"),
    "job_vs_benchmark": (pick("fw", 2048, 8, "grpc").get("tokens_per_second", 0)
                         / max(1.0, fw2048.get("tokens_per_second", 0))),
    # Every job row of the run (the defaults' spread and the A/B).
    "job_runs": [{k: r.get(k) for k in ("tokens_per_second", "scan_streams",
                                        "stream_window_mib", "input_wait_fraction",
                                        "input_prefetch_fraction")}
                 for r in rows if r.get("store") == "grpc"],
    "anchor_python_fw3_s512_b8_tokens_per_second": 199000,
    "rows": rows,
}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
PY
