// AdamW with its state in flat float32 buffers: the one optimizer of the
// flow-layer trainer, the local trainer, the regression baseline and the
// teacher pretrainer.
//
// Update rule: torch's AdamW (decoupled decay p *= 1 - lr wd, moments
// m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p -= lr / (1 - b1^k) *
// m / (sqrt(v) / sqrt(1 - b2^k) + eps)), the same operations in the same
// order, so it follows torch::optim::AdamW to the last bit on the CPU (a
// test holds it to that). Differences from torch's:
//  - the parameters are views into one float32 buffer (master()), so the
//    update is a handful of kernels over P elements instead of a handful per
//    tensor, and the state is three tensors in a checkpoint, the same in
//    every LibTorch version;
//  - the gradient is a flat [P] float32 tensor the caller hands over (the
//    trainer all-reduces it in place first); GatherGradients fills one from
//    the parameters' .grad.
// Parameters must be float32 (or float64: then the buffers are too) and on
// one device. Not thread-safe.
#ifndef LFT_WORKER_MODEL_ADAMW_H_
#define LFT_WORKER_MODEL_ADAMW_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace lft {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// Parameters that share a weight decay.
struct AdamWGroup {
  std::vector<torch::Tensor> params;
  double weight_decay = 0;
};

class AdamW {
 public:
  // Re-points every parameter at its slice of the master buffer (values
  // kept); parameters must not be re-allocated afterwards.
  AdamW(std::vector<AdamWGroup> groups, AdamWOptions options = {});

  int64_t size() const { return size_; }
  // Parameters in master order (group by group).
  const std::vector<torch::Tensor>& params() const { return params_; }
  // Element offset of params()[i] in the flat buffers.
  int64_t offset(size_t i) const { return offsets_[i]; }

  // Copies every parameter's .grad into grad[0, P) (zeros where undefined).
  void GatherGradients(const torch::Tensor& grad) const;
  // One step with gradient grad [P] (float32, on the parameters' device) at
  // learning rate lr, times grad_scale first when that is defined (a
  // one-element tensor on the device: ClipCoefficient). No host
  // synchronisation. On CUDA one fused pass per weight-decay group that
  // only reads grad (worker/kernels/fused_ops.h, FusedAdamWStep);
  // elsewhere the operations listed above, which scale grad in place.
  void Step(const torch::Tensor& grad, double lr,
            const torch::Tensor& grad_scale = torch::Tensor());

  // State, for checkpoints.
  const torch::Tensor& master() const { return master_; }
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  uint64_t steps() const { return steps_; }
  // Restores the moments and step count (sizes checked by the caller).
  void SetState(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq,
                uint64_t steps);

 private:
  struct Range {
    int64_t begin, count;
    double weight_decay;
  };
  AdamWOptions options_;
  std::vector<torch::Tensor> params_;
  std::vector<int64_t> offsets_;
  std::vector<Range> ranges_;
  int64_t size_ = 0;
  torch::Tensor master_, exp_avg_, exp_avg_sq_;
  uint64_t steps_ = 0;
};

// Scales grad [P] in place to global L2 norm at most max_norm, as torch's
// clip_grad_norm_ (coefficient max_norm / (norm + 1e-6) when below 1), on
// the device: no host round trip.
void ClipGradientNorm(const torch::Tensor& grad, double max_norm);
// That coefficient as a one-element tensor on grad's device, for Step's
// grad_scale; undefined when max_norm <= 0 (no clipping).
torch::Tensor ClipCoefficient(const torch::Tensor& grad, double max_norm);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_ADAMW_H_
