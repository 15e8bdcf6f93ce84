// CUDA graph capture of a training step; see cuda_step_graph.h.
#include "worker/trainer/engine/cuda_step_graph.h"

#include <exception>

#include "absl/strings/str_cat.h"

#if defined(LFT_TORCH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lft {

#if defined(LFT_TORCH_CUDA)

struct CudaStepGraph::Impl {
  at::cuda::CUDAGraph graph;
};

CudaStepGraph::CudaStepGraph() = default;
CudaStepGraph::~CudaStepGraph() = default;

absl::Status CudaStepGraph::Capture(const std::function<void()>& step,
                                    int warmup) {
  impl_.reset();
  auto impl = std::make_unique<Impl>();
  try {
    // Capture cannot run on the default stream; the side stream starts
    // after what the current one has queued, and the current one waits
    // for the capture's warm-up work.
    c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
    at::cuda::CUDAEvent ready;
    ready.record(current);
    ready.block(side);
    {
      c10::cuda::CUDAStreamGuard guard(side);
      for (int i = 0; i < warmup; ++i) step();
      impl->graph.capture_begin();
      try {
        step();
      } catch (...) {
        try {
          impl->graph.capture_end();
        } catch (...) {
        }
        throw;
      }
      impl->graph.capture_end();
    }
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(current);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(
        "capturing the training step as a CUDA graph: ", e.what()));
  }
  impl_ = std::move(impl);
  return absl::OkStatus();
}

void CudaStepGraph::Replay() {
  if (impl_ != nullptr) impl_->graph.replay();
}

#else  // !LFT_TORCH_CUDA

struct CudaStepGraph::Impl {};

CudaStepGraph::CudaStepGraph() = default;
CudaStepGraph::~CudaStepGraph() = default;

absl::Status CudaStepGraph::Capture(const std::function<void()>& step,
                                    int warmup) {
  (void)step;
  (void)warmup;
  return absl::UnimplementedError(
      "this build's LibTorch has no CUDA: no CUDA graphs");
}

void CudaStepGraph::Replay() {}

#endif

}  // namespace lft
