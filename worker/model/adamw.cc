// AdamW on flat buffers; see adamw.h.
#include "worker/model/adamw.h"

#include <cmath>

#include "worker/kernels/fused_ops.h"

namespace lft {

AdamW::AdamW(std::vector<AdamWGroup> groups, AdamWOptions options)
    : options_(options) {
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
  bool first = true;
  for (const AdamWGroup& g : groups) {
    const int64_t begin = size_;
    for (const torch::Tensor& p : g.params) {
      if (first) {
        dtype =
            p.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
        device = p.device();
        first = false;
      }
      params_.push_back(p);
      offsets_.push_back(size_);
      size_ += p.numel();
    }
    ranges_.push_back({begin, size_ - begin, g.weight_decay});
  }
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  master_ = torch::empty({size_}, opts);
  exp_avg_ = torch::zeros({size_}, opts);
  exp_avg_sq_ = torch::zeros({size_}, opts);
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i];
    torch::Tensor slice =
        master_.narrow(0, offsets_[i], p.numel()).view(p.sizes());
    slice.copy_(p);
    // The same Variable (autograd meta, module registration) over new data.
    p.set_data(slice);
  }
}

void AdamW::GatherGradients(const torch::Tensor& grad) const {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor slice = grad.narrow(0, offsets_[i], params_[i].numel());
    const torch::Tensor& g = params_[i].grad();
    if (g.defined()) {
      slice.copy_(g.reshape({-1}));
    } else {
      slice.zero_();
    }
  }
}

void AdamW::Step(const torch::Tensor& grad_in, double lr,
                 const torch::Tensor& grad_scale) {
  torch::NoGradGuard no_grad;
  torch::Tensor g = grad_in.narrow(0, 0, size_);
  ++steps_;
  const double k = static_cast<double>(steps_);
  const double bc1 = 1 - std::pow(options_.beta1, k);
  const double bc2 = 1 - std::pow(options_.beta2, k);
  AdamWHyper h;
  h.lr = lr;
  h.beta1 = options_.beta1;
  h.beta2 = options_.beta2;
  h.eps = options_.eps;
  h.bias_correction1 = bc1;
  h.bias_correction2 = bc2;
  // Every range has the buffers' device, dtype and layout, so either all
  // take the kernel or the first declines and nothing has changed.
  bool fused = true;
  for (size_t i = 0; i < ranges_.size() && fused; ++i) {
    const Range& r = ranges_[i];
    h.weight_decay = r.weight_decay;
    fused = FusedAdamWStep(master_.narrow(0, r.begin, r.count),
                           exp_avg_.narrow(0, r.begin, r.count),
                           exp_avg_sq_.narrow(0, r.begin, r.count),
                           g.narrow(0, r.begin, r.count), grad_scale, h);
    TORCH_CHECK(fused || i == 0, "AdamW: the fused step declined a range");
  }
  if (fused) return;
  if (grad_scale.defined()) g.mul_(grad_scale);
  for (const Range& r : ranges_) {
    if (r.weight_decay != 0 && r.count > 0)
      master_.narrow(0, r.begin, r.count).mul_(1 - lr * r.weight_decay);
  }
  exp_avg_.mul_(options_.beta1).add_(g, 1 - options_.beta1);
  exp_avg_sq_.mul_(options_.beta2).addcmul_(g, g, 1 - options_.beta2);
  torch::Tensor denom =
      (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(options_.eps);
  master_.addcdiv_(exp_avg_, denom, -lr / bc1);
}

void AdamW::SetState(const torch::Tensor& exp_avg,
                     const torch::Tensor& exp_avg_sq, uint64_t steps) {
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
  steps_ = steps;
}

torch::Tensor ClipCoefficient(const torch::Tensor& grad, double max_norm) {
  if (max_norm <= 0) return torch::Tensor();
  torch::NoGradGuard no_grad;
  return (max_norm / (grad.norm() + 1e-6)).clamp_max(1.0);
}

void ClipGradientNorm(const torch::Tensor& grad, double max_norm) {
  torch::Tensor coef = ClipCoefficient(grad, max_norm);
  if (!coef.defined()) return;
  torch::NoGradGuard no_grad;
  grad.mul_(coef);
}

}  // namespace lft
