#!/usr/bin/env bash
# Installs every Debian package that lft's build, tests and tools need.
# Idempotent and non-interactive: packages already present are skipped, and
# the script says what it installs. Safe to run again at any time.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config ccache clang-format
  # scripts/check-thread-safety.sh: clang checks the thread-safety annotations
  clang
  # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes for clang
  libclang-rt-14-dev
  # model code (LibTorch 1.13, CPU) and CPU collectives
  libtorch-dev libgloo-dev
  # an optimised BLAS: without it LibTorch falls back to the reference BLAS
  # (measured 7.7x slower training on 2 cores)
  libopenblas0-pthread
  # service stack
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev rocksdb-tools prometheus-cpp-dev libcivetweb-dev civetweb
  libssl-dev libzstd-dev zstd nlohmann-json3-dev zlib1g-dev
  # YAML job specs (lftctl submit spec.yaml)
  libyaml-cpp-dev
  # tests and their tools (promtool comes with the prometheus package)
  libgtest-dev libgmock-dev prometheus curl
  # tests/deploy_check.sh: Kubernetes manifests (python3 yaml) and the SLURM script
  python3-yaml shellcheck
  # tests/integration/python_client_test.py: an independent Python client with
  # stubs from Debian's grpc-tools (protoc 3.5.1: the protos must stay
  # compatible with it)
  python3-grpcio python3-grpc-tools python3-protobuf
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
