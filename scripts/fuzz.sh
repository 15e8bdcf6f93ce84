#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with Debian's clang,
# -fsanitize=fuzzer,address, into build-fuzz/ (services only, no LibTorch),
# replays every regression input, then fuzzes each target for
# LFT_FUZZ_SECONDS (default 600) under nice -n 19, LFT_FUZZ_JOBS (default 2)
# at a time, starting from tests/fuzz/seeds/<target>/. Prints per target the
# executions and coverage (libFuzzer's cov: edges, ft: features); exits 1 if
# any target found a crash (the input is kept in build-fuzz/artifacts/: add
# it to tests/fuzz/regressions/<target>/ once fixed).
#
#   scripts/fuzz.sh                        # 10 minutes per target
#   LFT_FUZZ_SECONDS=10 scripts/fuzz.sh    # CI's short run (.ci/run)
#   LFT_FUZZ_TARGETS="safetensors_fuzzer" scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${LFT_FUZZ_SECONDS:-600}"
JOBS="${LFT_FUZZ_JOBS:-2}"
ALL="safetensors_fuzzer job_spec_json_fuzzer job_spec_yaml_fuzzer jsonl_zst_fuzzer tokenizer_json_fuzzer store_record_fuzzer"
TARGETS="${LFT_FUZZ_TARGETS:-$ALL}"
OUT=build-fuzz

if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    clang++ -x c++ -fsanitize=fuzzer,address - -o /tmp/lft-fuzz-probe.$$ 2>/dev/null; then
  echo "fuzz.sh: clang++ cannot link -fsanitize=fuzzer (install clang and" \
       "libclang-rt-dev: scripts/setup.sh)" >&2
  exit 2
fi
rm -f /tmp/lft-fuzz-probe.$$

cmake -S . -B "$OUT" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLFT_WITH_TORCH=OFF -DLFT_BUILD_TESTS=OFF \
  -DLFT_BUILD_BENCH=OFF -DLFT_FUZZ=ON >/dev/null
# shellcheck disable=SC2086
nice cmake --build "$OUT" -j "$(nproc)" --target $TARGETS

mkdir -p "$OUT/artifacts" "$OUT/logs"
status=0
for t in $TARGETS; do
  reg="tests/fuzz/regressions/$t"
  if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ]; then
    if ! "$OUT/tests/fuzz/$t" "$reg"/* >"$OUT/logs/$t.regressions.log" 2>&1; then
      echo "fuzz.sh: $t fails on a regression input; see $OUT/logs/$t.regressions.log" >&2
      status=1
    fi
  fi
done

run_one() {
  t="$1"
  corpus="$OUT/corpus/$t"
  mkdir -p "$corpus"
  nice -n 19 "$OUT/tests/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" \
    -print_final_stats=1 -rss_limit_mb=2048 -timeout=20 -max_len=65536 \
    -artifact_prefix="$OUT/artifacts/$t-" "$corpus" "tests/fuzz/seeds/$t" \
    >"$OUT/logs/$t.log" 2>&1
}
export -f run_one
export OUT SECONDS_PER_TARGET
# shellcheck disable=SC2086
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {} || echo "{} FAILED"' \
  > "$OUT/logs/summary.txt"

printf '%-24s %12s %8s %8s %s\n' target executions cov ft result
for t in $TARGETS; do
  log="$OUT/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  result=ok
  if grep -q "^$t FAILED" "$OUT/logs/summary.txt"; then result="CRASH (see $log)"; status=1; fi
  printf '%-24s %12s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $status
