#!/usr/bin/env bash
# One device call: backtraces of the binaries that crash on the GPU host
# (deploy/gpu/README.md, "Known problem"), with cuda-gdb (the host has no
# gdb), and which libraries protobuf/absl symbols bind to.
#   device: bash deploy/gpu/backtrace.sh     (carry .carry)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/lft-out}
mkdir -p "$OUT"
LFT_BUILD_TARGETS="model_teacher_runner_test trainer_runner_test" \
  bash deploy/gpu/build.sh >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
source deploy/gpu/env.sh
GDB=$(command -v cuda-gdb || ls /usr/local/cuda*/bin/cuda-gdb 2>/dev/null | head -1)
echo "debugger: ${GDB:-none}"
for t in "tests/unit/worker/model_teacher_runner_test" \
         "tests/unit/worker/trainer_runner_test --gtest_filter=*Refuses*"; do
  echo "==== $t"
  # shellcheck disable=SC2086
  timeout 240 "$GDB" -batch -ex "set pagination off" -ex run -ex "bt 40" \
    -ex "info sharedlibrary" --args build-gpu/$t 2>&1 | grep -v "^\[New Thread\|^\[Thread" | tail -90
done
echo "==== bindings of google::protobuf and absl symbols (first 40)"
LD_DEBUG=bindings LD_DEBUG_OUTPUT="$OUT/bind" timeout 120 \
  build-gpu/tests/unit/worker/model_teacher_runner_test >/dev/null 2>&1
cat "$OUT"/bind.* 2>/dev/null | grep -E "_ZN6google8protobuf|_ZN4absl" | \
  sed 's/.*binding file //' | awk '{print $1, "->", $4}' | sort | uniq -c | sort -rn | head -40
