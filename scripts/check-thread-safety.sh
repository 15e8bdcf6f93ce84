#!/usr/bin/env bash
# Builds the torch-free services (-DLFT_WITH_TORCH=OFF) with Debian's clang,
# -Wthread-safety and -Werror, into build-clang/: the ABSL_GUARDED_BY and
# ABSL_*_LOCKS_REQUIRED annotations are checked, not only written. Run by CI
# (.ci/run) after scripts/test.sh; needs clang (scripts/setup.sh installs it).
#
#   scripts/check-thread-safety.sh          # configure + build, exit 1 on a warning
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
cmake -S . -B build-clang -G Ninja -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DLFT_WITH_TORCH=OFF -DLFT_BUILD_BENCH=OFF \
  -DLFT_WARNINGS_AS_ERRORS=ON
cmake --build build-clang -j "$(nproc)"
echo "check-thread-safety.sh: clang build took $(( $(date +%s) - start )) s"
