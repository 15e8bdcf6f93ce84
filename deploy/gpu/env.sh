# Source after deploy/gpu/build.sh to run the binaries it built.
D=${LFT_DEPS_PREFIX:-/tmp/lft-deps}
export PATH=$D/usr/bin:$PATH
export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:$D/usr/lib:$D/nccl/lib:${LD_LIBRARY_PATH:-}
# NVLink multicast stays off on shared hosts.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
