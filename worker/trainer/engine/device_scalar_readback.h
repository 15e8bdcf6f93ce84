// A device scalar read back to the host without draining its stream: Start
// queues a copy into pinned host memory and records an event behind it;
// Wait blocks only until that copy is done, not for work queued on the
// stream after Start. The engine reads a step's loss this way after it
// queued the next step's graph, so the GPU has work while the host waits
// (a plain .item() waits for everything queued, and the GPU then idles
// until the host launches the next step: 16% of a step at 512 x 8).
//
// On the CPU, or where LibTorch has no CUDA, Start reads the value at once.
#ifndef LFT_WORKER_TRAINER_ENGINE_DEVICE_SCALAR_READBACK_H_
#define LFT_WORKER_TRAINER_ENGINE_DEVICE_SCALAR_READBACK_H_

#include <torch/torch.h>

#include <memory>

namespace lft {

class DeviceScalarReadback {
 public:
  DeviceScalarReadback();
  ~DeviceScalarReadback();
  DeviceScalarReadback(const DeviceScalarReadback&) = delete;
  DeviceScalarReadback& operator=(const DeviceScalarReadback&) = delete;

  // `scalar`: one element of a floating dtype, on any device; queued on the
  // current stream.
  void Start(const torch::Tensor& scalar);
  // The value of the last Start (0 before any); throws LibTorch's errors.
  double Wait();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  double value_ = 0;
};

}  // namespace lft

#endif  // LFT_WORKER_TRAINER_ENGINE_DEVICE_SCALAR_READBACK_H_
