#!/usr/bin/env bash
# The README's test command: installs what the build needs, builds everything
# and runs the whole CPU test suite through ctest.
#
#   scripts/test.sh                 # build/ , RelWithDebInfo
#   scripts/test.sh --sanitize      # build-asan/ with -DLFT_SANITIZE=address,undefined
#   scripts/test.sh -L store        # extra arguments go to ctest
#
# Under CI (CI=true) warnings are errors.
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=build
cmake_args=()
ctest_args=()
for arg in "$@"; do
  case "$arg" in
    --sanitize)
      build_dir=build-asan
      cmake_args+=(-DLFT_SANITIZE=address,undefined -DCMAKE_BUILD_TYPE=Debug) ;;
    *) ctest_args+=("$arg") ;;
  esac
done
if [ "${CI:-}" = "true" ]; then cmake_args+=(-DLFT_WARNINGS_AS_ERRORS=ON); fi

start=$(date +%s)
bash scripts/setup.sh
cmake -S . -B "$build_dir" -G Ninja "${cmake_args[@]}"
cmake --build "$build_dir" -j "$(nproc)"
built=$(date +%s)
echo "test.sh: build took $((built - start)) s"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "${ctest_args[@]}"
echo "test.sh: tests took $(( $(date +%s) - built )) s"
