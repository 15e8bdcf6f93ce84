// See device_scalar_readback.h.
#include "worker/trainer/engine/device_scalar_readback.h"

#if defined(LFT_TORCH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lft {

#if defined(LFT_TORCH_CUDA)
struct DeviceScalarReadback::Impl {
  torch::Tensor host;  // pinned, one double
  at::cuda::CUDAEvent copied;
  bool pending = false;
};
#else
struct DeviceScalarReadback::Impl {};
#endif

DeviceScalarReadback::DeviceScalarReadback()
    : impl_(std::make_unique<Impl>()) {}
DeviceScalarReadback::~DeviceScalarReadback() = default;

void DeviceScalarReadback::Start(const torch::Tensor& scalar) {
#if defined(LFT_TORCH_CUDA)
  impl_->pending = false;
  if (scalar.is_cuda()) {
    if (!impl_->host.defined()) {
      impl_->host = torch::empty(
          {1},
          torch::TensorOptions().dtype(torch::kDouble).pinned_memory(true));
    }
    impl_->host.copy_(scalar.reshape({1}).to(torch::kDouble),
                      /*non_blocking=*/true);
    impl_->copied.record(c10::cuda::getCurrentCUDAStream());
    impl_->pending = true;
    return;
  }
#endif
  value_ = scalar.item<double>();
}

double DeviceScalarReadback::Wait() {
#if defined(LFT_TORCH_CUDA)
  if (impl_->pending) {
    impl_->copied.synchronize();
    value_ = impl_->host.data_ptr<double>()[0];
    impl_->pending = false;
  }
#endif
  return value_;
}

}  // namespace lft
