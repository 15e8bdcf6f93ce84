#!/usr/bin/env bash
# Builds lft on the GPU host (Ubuntu 24.04, PyTorch 2.11 + CUDA 13 + NCCL in
# /opt/torch/.venv) against PyTorch's LibTorch and NCCL, with Debian 12's
# gRPC / RocksDB / Abseil / prometheus-cpp / GoogleTest carried as .debs.
#
# On the CPU machine, once (see deploy/gpu/README.md):
#   mkdir -p .carry/debs && (cd .carry/debs && apt-get download $(cat deploy/gpu/debs.txt))
# On the GPU host, from the repo root, with .carry carried:
#   bash deploy/gpu/build.sh            # configure + build into build-gpu/
#   source deploy/gpu/env.sh            # LD_LIBRARY_PATH for running binaries
set -euo pipefail
cd "$(dirname "$0")/../.."

D=${LFT_DEPS_PREFIX:-/tmp/lft-deps}
debs=$(cd .carry/debs && ls *.deb | sort | tr '\n' ' ')
if [ "$(cat "$D/.unpacked" 2>/dev/null)" != "$debs" ]; then
  echo "build.sh: unpacking $(ls .carry/debs/*.deb | wc -l) .debs into $D"
  rm -rf "$D" && mkdir -p "$D"
  for f in .carry/debs/*.deb; do dpkg -x "$f" "$D"; done
  L=$D/usr/lib/x86_64-linux-gnu
  # pkg-config and CMake files name absolute /usr paths: point them at $D.
  find "$D" -name '*.pc' -exec sed -i "s#^prefix=/usr\$#prefix=$D/usr#" {} +
  cmake_dirs=()
  for dir in "$L/cmake" "$D/usr/share/cmake" "$D/usr/lib/cmake"; do
    [ -d "$dir" ] && cmake_dirs+=("$dir")
  done
  find "${cmake_dirs[@]}" -name '*.cmake' \
    -exec sed -i -e "s#\([^A-Za-z0-9_./-]\)/usr/lib/x86_64-linux-gnu#\1$L#g" \
                 -e "s#\([^A-Za-z0-9_./-]\)/usr/include#\1$D/usr/include#g" {} +
  # Debian's libssl-dev symlinks point at a runtime we do not carry; the
  # host's libssl.so.3 / libcrypto.so.3 (same 3.0 ABI) serve instead.
  for lib in libssl libcrypto; do
    if [ ! -e "$L/$lib.so.3" ] && [ -e "/usr/lib/x86_64-linux-gnu/$lib.so.3" ]; then
      ln -sf "/usr/lib/x86_64-linux-gnu/$lib.so.3" "$L/$lib.so.3"
    fi
  done
  echo "$debs" > "$D/.unpacked"
fi

PY=${PYTHON:-python3}
TORCH_CMAKE=$($PY -c 'import torch;print(torch.utils.cmake_prefix_path)')
NCCL_ROOT=$($PY -c 'import nvidia.nccl,os;print(list(nvidia.nccl.__path__)[0])')
# The NCCL wheel ships libnccl.so.2 only; the linker wants libnccl.so.
mkdir -p "$D/nccl/lib"
ln -sf "$NCCL_ROOT/include" "$D/nccl/include"
ln -sf "$NCCL_ROOT/lib/libnccl.so.2" "$D/nccl/lib/libnccl.so"
ln -sf "$NCCL_ROOT/lib/libnccl.so.2" "$D/nccl/lib/libnccl.so.2"

export PATH=$D/usr/bin:$PATH
export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:$D/usr/lib:$D/nccl/lib:${LD_LIBRARY_PATH:-}

# PyTorch's libtorch.so exports its own std::filesystem (64 symbols) and
# libtorch_cpu.so its own Gloo; an executable lists libtorch before
# libstdc++ and Gloo in DT_NEEDED, so those calls bound to PyTorch's copies
# and crashed (std::filesystem::remove_all jumped to address 0; README,
# "Known problem"). Naming libstdc++ and Debian's Gloo first makes every
# executable bind to them; LibTorch keeps its own internal references.
LINK_FIRST="-Wl,--no-as-needed $(${CXX:-c++} -print-file-name=libstdc++.so.6) $(ls "$D"/usr/lib/libgloo.so.0 2>/dev/null)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_EXE_LINKER_FLAGS="$LINK_FIRST" \
  -DCMAKE_PREFIX_PATH="$TORCH_CMAKE;$D/usr" \
  -DCMAKE_CUDA_ARCHITECTURES=90 -DLFT_NCCL_ROOT="$D/nccl" \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DLFT_BUILD_BENCH=ON "$@"
# LFT_BUILD_TARGETS="a b": build only those (quick device calls).
if [ -n "${LFT_BUILD_TARGETS:-}" ]; then
  # shellcheck disable=SC2086
  cmake --build build-gpu -j "$(nproc)" --target ${LFT_BUILD_TARGETS}
else
  cmake --build build-gpu -j "$(nproc)"
fi
