#!/usr/bin/env bash
# Trainer throughput and MFU on the GPU host, in one device call (issue 13):
# builds, runs the GPU tests of the trainer and the latent codecs, then
# tests/bench/trainer_throughput at width 1024 (a Pythia-410M layer) on one
# CUDA rank (bf16 autocast): FW k=3 midpoint at sequence 2048 and 512
# (batch 8), SFM and the regression baseline at 2048; the bf16 matmul peak
# is measured in the same run. Writes $OUT/trainer-h200.json (copy it to
# docs/benchmarks/). 2-GPU scaling needs a multi-GPU kind: RANKS=1,2 there.
#   device: bash deploy/gpu/trainer_bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/trainer.log") 2>&1
LFT_BUILD_TARGETS="trainer_throughput trainer_runner_test model_teacher_runner_test" \
  bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader) commit ${LFT_COMMIT:-unknown}"
LFT_TEST_SRCDIR=$PWD build-gpu/tests/unit/worker/trainer_runner_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure|Which' | tail -5
build-gpu/tests/unit/worker/model_teacher_runner_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure' | tail -3
B=build-gpu/tests/bench/trainer_throughput
RANKS=${RANKS:-1}
STEPS=${STEPS:-20}
JSONL=$OUT/trainer.jsonl
: > "$JSONL"
row() {  # method seq batch
  $B --device cuda --hidden 1024 --method "$1" --seq "$2" --batch "$3" \
    --steps "$STEPS" --ranks "$RANKS" ${PEAK:+--peak-tflops "$PEAK"} 2>&1 \
    | grep -v "^20[0-9][0-9]-" | tee "$OUT/row.txt"
  grep '^json ' "$OUT/row.txt" | sed 's/^json //' >> "$JSONL"
  # Measure the peak once, then reuse it.
  PEAK=${PEAK:-$(grep -o '"peak_bf16_tflops": [0-9.]*' "$OUT/row.txt" | head -1 | awk '{print $2}')}
}
row fw 2048 8
row fw 512 8
row sfm 2048 8
row regression 2048 8
python3 - "$JSONL" "$OUT/trainer-h200.json" \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" "${LFT_COMMIT:-unknown}" <<'PY'
import datetime, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(method, seq, batch):
    for r in rows:
        if r["method"] == method and r["seq"] == seq and r["batch"] == batch and r["ranks"] == 1:
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
    "anchor_python_fw3_s512_b8_tokens_per_second": 199000,
    "rows": rows,
}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=2))
PY
