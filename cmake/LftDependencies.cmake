# Finds every third-party dependency once and exposes it as an imported
# target. All of them come from Debian packages (scripts/setup.sh); on the GPU
# host the same packages are unpacked into a prefix (deploy/gpu/build.sh), so
# each lookup works from CMAKE_PREFIX_PATH and pkg-config alike.

find_package(Threads REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(RocksDB CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
# YAML job specs for lftctl (Debian libyaml-cpp-dev; target yaml-cpp).
find_package(yaml-cpp CONFIG REQUIRED)

# Protobuf and gRPC through pkg-config: their CMake configs are not relocatable
# when the .debs are unpacked outside /usr.
pkg_check_modules(LFT_PROTOBUF REQUIRED IMPORTED_TARGET protobuf)
pkg_check_modules(LFT_GRPCPP REQUIRED IMPORTED_TARGET grpc++)
pkg_check_modules(LFT_ZSTD REQUIRED IMPORTED_TARGET libzstd)
find_program(LFT_PROTOC protoc REQUIRED)
find_program(LFT_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

if(TARGET RocksDB::rocksdb-shared)
  set(LFT_ROCKSDB_TARGET RocksDB::rocksdb-shared)
else()
  set(LFT_ROCKSDB_TARGET RocksDB::rocksdb)
endif()

if(LFT_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()

if(LFT_WITH_TORCH)
  find_package(Torch REQUIRED)
  # Torch's exported flags include -D_GLIBCXX_USE_CXX11_ABI and warnings we do
  # not control; keep them on torch targets only.
  find_package(CUDAToolkit QUIET)
  # worker/kernels' fused CUDA kernels: compiled where nvcc and a LibTorch
  # built with CUDA are both present (the GPU host); the CPU build has
  # neither and runs the same operations as LibTorch expressions.
  option(LFT_CUDA_KERNELS "Compile worker/kernels' CUDA kernels when nvcc is found" ON)
  set(LFT_HAVE_CUDA_KERNELS OFF)
  if(LFT_CUDA_KERNELS AND (TORCH_CUDA_LIBRARIES OR TARGET torch_cuda)
     AND TARGET CUDA::cudart)
    include(CheckLanguage)
    check_language(CUDA)
    if(CMAKE_CUDA_COMPILER)
      enable_language(CUDA)
      set(LFT_HAVE_CUDA_KERNELS ON)
    endif()
  endif()
  set(LFT_HAVE_NCCL OFF)
  if(LFT_NCCL_ROOT)
    find_path(LFT_NCCL_INCLUDE nccl.h HINTS ${LFT_NCCL_ROOT}/include)
    find_library(LFT_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${LFT_NCCL_ROOT}/lib)
    if(LFT_NCCL_INCLUDE AND LFT_NCCL_LIBRARY)
      set(LFT_HAVE_NCCL ON)
    endif()
  endif()
  find_library(LFT_GLOO_LIBRARY gloo)
  find_path(LFT_GLOO_INCLUDE gloo/allreduce.h)
  set(LFT_HAVE_GLOO OFF)
  if(LFT_GLOO_LIBRARY AND LFT_GLOO_INCLUDE)
    set(LFT_HAVE_GLOO ON)
  endif()
  message(STATUS "lft: torch ${Torch_VERSION}, NCCL ${LFT_HAVE_NCCL}, Gloo ${LFT_HAVE_GLOO}, CUDA kernels ${LFT_HAVE_CUDA_KERNELS}")
endif()
