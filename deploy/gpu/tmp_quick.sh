set -uo pipefail
OUT=${OUT:-/tmp/lft-out}
LFT_BUILD_TARGETS="extraction_throughput trainer_throughput model_fused_ops_test model_gpu_test model_teacher_runner_test" bash deploy/gpu/build.sh > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
source deploy/gpu/env.sh
build-gpu/tests/unit/worker/model_fused_ops_test --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[  |Failure|Expected|max diff' | tail -6
build-gpu/tests/unit/worker/model_teacher_runner_test --gtest_filter='*Cuda*' 2>&1 | tail -2
(cd build-gpu/tests/gpu && ./model_gpu_test 2>&1 | grep -E "OK|FAIL|Failure|Expected|Which" | tail -12)
B=build-gpu/tests/bench/extraction_throughput; T=/tmp/lftx/teacher; mkdir -p /tmp/lftx
$B --mode make-teacher --teacher "$T" --corpus $PWD/.carry/corpus/00.jsonl.zst > /dev/null || exit 1
PYTHONUNBUFFERED=1 python3 tests/bench/hf_forward.py --teacher "$T" 2>&1 | grep -v "^json" | tail -6
for shape in "8 2048" "32 512"; do set -- $shape; $B --mode forward --teacher "$T" --batch "$1" --seq "$2" 2>&1 | grep -v "^json" | tail -3; done
for q in 2048 512; do for f in 1 0; do LFT_FUSED_KERNELS=$f build-gpu/tests/bench/trainer_throughput --device cuda --hidden 1024 --method fw --seq $q --batch 8 --steps 16 --ranks 1 --peak-tflops 790 2>&1 | grep '^|' | tail -1 | sed "s/^/fused=$f seq=$q /"; done; done
