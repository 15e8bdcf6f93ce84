#!/usr/bin/env bash
# One device call: does the order in which Debian's protobuf/Gloo and
# PyTorch's bundled copies are bound decide the SIGSEGV of binaries that link
# both (deploy/gpu/README.md, "Known problem")? Builds, runs the affected
# tests as built, with Debian's libprotobuf/libgloo preloaded, and after a
# relink that puts them first in DT_NEEDED; then the trainer on CUDA.
#   device: bash deploy/gpu/symbol_clash_check.sh     (carry .carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/symbol_clash.log") 2>&1
start=$(date +%s)
bash deploy/gpu/build.sh >"$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
echo "build took $(( $(date +%s) - start )) s"
source deploy/gpu/env.sh
L=${LFT_DEPS_PREFIX:-/tmp/lft-deps}/usr/lib/x86_64-linux-gnu
PB=$(ls $L/libprotobuf.so.32* | head -1)
GL=$(ls $L/libgloo.so* | head -1)
TESTS='model_teacher_runner_test|trainer_runner_test|trainer_gpu_test|coordinator_teacher_integration_test|trainer_integration_test'
echo "== as built"
readelf -d build-gpu/tests/unit/worker/model_teacher_runner_test | grep NEEDED | head -12
timeout 300 ctest --test-dir build-gpu -R "$TESTS" --output-on-failure -j 2 2>&1 | tail -40
echo "== LD_PRELOAD=$PB:$GL"
LD_PRELOAD="$PB:$GL" timeout 300 ctest --test-dir build-gpu -R "$TESTS" -j 2 2>&1 | tail -15
echo "== relinked with Debian protobuf and Gloo first in DT_NEEDED"
cmake -S . -B build-gpu -DCMAKE_EXE_LINKER_FLAGS="-Wl,--no-as-needed $PB $GL" >/dev/null
cmake --build build-gpu -j "$(nproc)" >"$OUT/relink.log" 2>&1 || tail -30 "$OUT/relink.log"
readelf -d build-gpu/tests/unit/worker/model_teacher_runner_test | grep NEEDED | head -6
timeout 300 ctest --test-dir build-gpu -R "$TESTS" --output-on-failure -j 2 2>&1 | tail -40
timeout 120 ctest --test-dir build-gpu -L 'gpu|model' -j 2 2>&1 | tail -12
echo "done after $(( $(date +%s) - start )) s"
