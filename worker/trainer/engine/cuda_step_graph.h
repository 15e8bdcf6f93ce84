// A training step's GPU work recorded once as a CUDA graph and replayed.
//
// At width 1024 one FW k = 3 midpoint step is ~1300 kernels; LibTorch's
// eager dispatch (autograd bookkeeping included) spends ~30 us of host time
// on each, more than the GPU needs for them at sequence 512 and about as
// much at 2048. A replay launches them all in one call. The step must read
// and write only tensors that outlive the graph (static inputs, parameters,
// the gradient buffer), never synchronise with the host and never copy from
// pageable host memory; its own temporaries come from the graph's private
// memory pool, reused by every replay.
//
// Built only where LibTorch has CUDA (LFT_TORCH_CUDA); elsewhere Capture
// answers Unimplemented and the caller stays eager.
#ifndef LFT_WORKER_TRAINER_ENGINE_CUDA_STEP_GRAPH_H_
#define LFT_WORKER_TRAINER_ENGINE_CUDA_STEP_GRAPH_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"

namespace lft {

class CudaStepGraph {
 public:
  CudaStepGraph();
  ~CudaStepGraph();
  CudaStepGraph(const CudaStepGraph&) = delete;
  CudaStepGraph& operator=(const CudaStepGraph&) = delete;

  // Runs `step` `warmup` times eagerly on a side stream (cuBLAS and cuDNN
  // plans, allocator growth), then records one call. The recorded call
  // does not execute: Replay() runs it. Internal with LibTorch's message if
  // capture fails (an op that cannot be captured); the graph is then empty.
  absl::Status Capture(const std::function<void()>& step, int warmup = 2);
  bool captured() const { return impl_ != nullptr; }
  // Launches the recorded work on the current stream.
  void Replay();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lft

#endif  // LFT_WORKER_TRAINER_ENGINE_CUDA_STEP_GRAPH_H_
