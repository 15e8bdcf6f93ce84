#!/usr/bin/env bash
# Issue 16's fidelity study on one H200 (docs/fidelity-method.md): builds the
# binaries with deploy/gpu/build.sh, then runs deploy/gpu/fidelity_study.py
# --scale gpu (pretraining, planner, 12 lft compress jobs, export + HF check;
# <= 25 minutes with the build) detached from the device call (setsid), so
# that it outlives the 10-minute limit of one call. Later calls wait for it.
# Every call ends by copying what exists so far into $OUT: fidelity.json,
# fidelity.md, study.log, results.tar.gz (reports, plots, planner heatmaps,
# HF check, log tails) and build.log.
#
# Needs .carry/debs (deploy/gpu/README.md) and .carry/corpus
# (python3 deploy/gpu/fidelity_study.py --prepare-carry, on the CPU side).
#
#   device call 1:  LFT_COMMIT=<sha> bash deploy/gpu/fidelity_study.sh
#                   (carry .carry; build, start, follow for ~9 minutes)
#   device call 2+: bash deploy/gpu/fidelity_study.sh --wait
#                   (no carry needed; follow for up to ~9.5 minutes more;
#                   returns at once when the study is done)
# Make the calls back to back: the machine goes back after 30 s idle, and
# the detached study with it.
#
# Knobs: LFT_WAIT_S (seconds a call follows the study, default 540 for the
# first call, 570 for --wait), LFT_FIDELITY_WORK (default /tmp/lft-fidelity),
# LFT_FIDELITY_ARGS (extra driver flags, e.g. --no-new-eval-fields),
# LFT_SKIP_BUILD=1 (use the binaries already built; with LFT_FIDELITY_ARGS=
# "--scale rehearsal --build build" this rehearses the detach / wait /
# deliver logic on a CPU machine).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${OUT:-/tmp/lft-out}
W=${LFT_FIDELITY_WORK:-/tmp/lft-fidelity}
mkdir -p "$OUT"
mode=${1:-start}
t_call=$(date +%s)

deliver() {
  python3 deploy/gpu/fidelity_study.py --deliver "$OUT" --work "$W" || true
}

# Follows study.log until the driver ends or $1 seconds of this call passed.
follow() {
  local limit=$1 pid
  pid=$(cat "$W/driver.pid" 2>/dev/null || echo 0)
  local left=$(( limit - ($(date +%s) - t_call) ))
  if [ ! -f "$W/driver.rc" ] && [ "$left" -gt 0 ] && kill -0 "$pid" 2>/dev/null; then
    timeout "$left" tail -n +1 -f --pid="$pid" "$W/study.log" || true
  else
    tail -n 60 "$W/study.log" 2>/dev/null || true
  fi
  if [ -f "$W/driver.rc" ]; then
    echo "== fidelity study finished with exit $(cat "$W/driver.rc")" \
         "after $(( $(date +%s) - $(cat "$W/started") )) s"
    deliver
    return "$(cat "$W/driver.rc")"
  fi
  echo "== fidelity study still running ($(( $(date +%s) - $(cat "$W/started") )) s so far):" \
       "call 'bash deploy/gpu/fidelity_study.sh --wait' now"
  deliver
  return 3
}

if [ "$mode" = "--wait" ]; then
  if [ ! -f "$W/driver.pid" ]; then
    echo "fidelity_study.sh: no study in $W on this machine (a fresh machine?" \
         "the first call starts it: bash deploy/gpu/fidelity_study.sh)" >&2
    exit 2
  fi
  follow "${LFT_WAIT_S:-570}"
  exit $?
fi

if [ -f "$W/driver.pid" ] && [ ! -f "$W/driver.rc" ] && \
   kill -0 "$(cat "$W/driver.pid")" 2>/dev/null; then
  echo "fidelity_study.sh: a study is already running here; following it"
  follow "${LFT_WAIT_S:-570}"
  exit $?
fi

if [ "${LFT_SKIP_BUILD:-0}" != 1 ]; then
  LFT_BUILD_TARGETS="lft-store lft-coordinator lft-worker lftctl lft-pretrain lft-analyze lft-export" \
    bash deploy/gpu/build.sh > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
fi
build_s=$(( $(date +%s) - t_call ))
echo "== build: ${build_s} s"
# shellcheck source=deploy/gpu/env.sh
source deploy/gpu/env.sh
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
     "commit ${LFT_COMMIT:-unknown}; disk: $(df -h /tmp | tail -1)"
rm -rf "$W" && mkdir -p "$W"
date +%s > "$W/started"
# shellcheck disable=SC2086
LFT_COMMIT=${LFT_COMMIT:-unknown} setsid bash -c \
  "python3 -u deploy/gpu/fidelity_study.py --scale gpu --work '$W' \
     --build-seconds $build_s ${LFT_FIDELITY_ARGS:-}; echo \$? > '$W/driver.rc.tmp'; \
   mv '$W/driver.rc.tmp' '$W/driver.rc'" \
  > "$W/study.log" 2>&1 < /dev/null &
echo $! > "$W/driver.pid"
follow "${LFT_WAIT_S:-540}"
exit $?
