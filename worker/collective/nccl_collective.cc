// NCCL implementation of Collective for GPU trainers (built only where NCCL
// and the CUDA runtime are found: the GPU host's build).
//
// The communicator is created non-blocking and every call is polled against
// a deadline (ncclCommGetAsyncError + cudaStreamQuery), so a dead peer turns
// into DeadlineExceeded and ncclCommAbort instead of a hang: the trainer can
// then dissolve the group and re-form it under a new generation.
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"
#include "worker/collective/collective.h"

#define LFT_CUDA_RETURN_IF_ERROR(expr)                             \
  do {                                                             \
    cudaError_t lft_cuda_err_ = (expr);                            \
    if (lft_cuda_err_ != cudaSuccess) {                            \
      return absl::InternalError(                                  \
          absl::StrCat(__FILE__, ":", __LINE__, ": ", #expr, ": ", \
                       cudaGetErrorString(lft_cuda_err_)));        \
    }                                                              \
  } while (false)

#define LFT_NCCL_RETURN_IF_ERROR(expr)                                     \
  do {                                                                     \
    ncclResult_t lft_nccl_err_ = (expr);                                   \
    if (lft_nccl_err_ != ncclSuccess && lft_nccl_err_ != ncclInProgress) { \
      return absl::UnavailableError(                                       \
          absl::StrCat(__FILE__, ":", __LINE__, ": ", #expr, ": ",         \
                       ncclGetErrorString(lft_nccl_err_)));                \
    }                                                                      \
  } while (false)

namespace lft {
namespace {

class NcclCollective : public Collective {
 public:
  NcclCollective(ncclComm_t comm, int rank, int world_size, cudaStream_t stream,
                 std::chrono::milliseconds timeout, float* scratch)
      : comm_(comm),
        rank_(rank),
        world_size_(world_size),
        stream_(stream),
        timeout_(timeout),
        scratch_(scratch) {}

  ~NcclCollective() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (scratch_ != nullptr) cudaFree(scratch_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }

  absl::Status AllReduceSum(void* data, size_t count,
                            CollectiveDtype dtype) override {
    if (comm_ == nullptr)
      return absl::FailedPreconditionError("collective was aborted");
    const ncclDataType_t type =
        dtype == CollectiveDtype::kF32 ? ncclFloat32 : ncclBfloat16;
    LFT_NCCL_RETURN_IF_ERROR(
        ncclAllReduce(data, data, count, type, ncclSum, comm_, stream_));
    return WaitForStream("all-reduce");
  }

  absl::Status Broadcast(void* data, size_t bytes, int root) override {
    if (comm_ == nullptr)
      return absl::FailedPreconditionError("collective was aborted");
    LFT_NCCL_RETURN_IF_ERROR(
        ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_));
    return WaitForStream("broadcast");
  }

  absl::Status Barrier() override {
    return AllReduceSum(scratch_, 1, CollectiveDtype::kF32);
  }

  void Abort() override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
  }

 private:
  absl::Status WaitForStream(absl::string_view what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      ncclResult_t async_err = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async_err);
      if (async_err != ncclSuccess && async_err != ncclInProgress) {
        Abort();
        return absl::UnavailableError(
            absl::StrCat("nccl ", what, ": ", ncclGetErrorString(async_err)));
      }
      cudaError_t q = cudaStreamQuery(stream_);
      if (q == cudaSuccess && async_err == ncclSuccess) return absl::OkStatus();
      if (q != cudaSuccess && q != cudaErrorNotReady) {
        return absl::InternalError(absl::StrCat("cuda during nccl ", what, ": ",
                                                cudaGetErrorString(q)));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        Abort();
        return absl::DeadlineExceededError(
            absl::StrCat("nccl ", what, " did not finish in ", timeout_.count(),
                         " ms (a peer is gone?)"));
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  ncclComm_t comm_;
  const int rank_;
  const int world_size_;
  const cudaStream_t stream_;
  const std::chrono::milliseconds timeout_;
  float* const scratch_;
};

}  // namespace

bool HaveNccl() { return true; }

absl::StatusOr<std::string> NewNcclCommunicatorId() {
  ncclUniqueId id;
  LFT_NCCL_RETURN_IF_ERROR(ncclGetUniqueId(&id));
  return std::string(id.internal, sizeof(id.internal));
}

absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(
    const NcclOptions& options) {
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is not in a group of ", options.world_size));
  }
  ncclUniqueId id;
  if (options.communicator_id.size() != sizeof(id.internal)) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL communicator id must be ", sizeof(id.internal),
                     " bytes, got ", options.communicator_id.size()));
  }
  std::memcpy(id.internal, options.communicator_id.data(), sizeof(id.internal));
  LFT_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  LFT_NCCL_RETURN_IF_ERROR(ncclCommInitRankConfig(&comm, options.world_size, id,
                                                  options.rank, &config));
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  while (true) {
    ncclResult_t state = ncclInProgress;
    ncclCommGetAsyncError(comm, &state);
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) {
      ncclCommAbort(comm);
      return absl::UnavailableError(
          absl::StrCat("NCCL init failed: ", ncclGetErrorString(state)));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(comm);
      return absl::DeadlineExceededError(absl::StrCat(
          "NCCL init: not all ", options.world_size, " ranks joined within ",
          options.timeout.count(), " ms"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  float* scratch = nullptr;
  LFT_CUDA_RETURN_IF_ERROR(cudaMalloc(&scratch, sizeof(float)));
  return std::unique_ptr<Collective>(
      new NcclCollective(comm, options.rank, options.world_size,
                         static_cast<cudaStream_t>(options.cuda_stream),
                         options.timeout, scratch));
}

}  // namespace lft
