// Metrics and baselines; see metrics.h. Everything accumulates in float64.
#include "worker/model/metrics.h"

#include <cmath>

namespace lft {
namespace {

// [B, T] float64 mask on CPU (all ones when undefined).
torch::Tensor MaskOf(const torch::Tensor& mask, const torch::Tensor& like) {
  if (mask.defined()) return mask.to(torch::kCPU, torch::kDouble);
  return torch::ones({like.size(0), like.size(1)}, torch::kDouble);
}

}  // namespace

void NmseAccumulator::Add(const torch::Tensor& x1_hat, const torch::Tensor& x1,
                          const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  torch::Tensor a = x1_hat.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor b = x1.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor m = MaskOf(mask, b);
  err_ += ((a - b).pow(2).sum(-1) * m).sum().item<double>();
  ref_ += (b.pow(2).sum(-1) * m).sum().item<double>();
}

void KlAccumulator::Add(const torch::Tensor& p_logits,
                        const torch::Tensor& q_logits,
                        const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  torch::Tensor lp =
      torch::log_softmax(p_logits.detach().to(torch::kDouble), -1);
  torch::Tensor lq =
      torch::log_softmax(q_logits.detach().to(torch::kDouble), -1);
  torch::Tensor kl = (lp.exp() * (lp - lq)).sum(-1).to(torch::kCPU);  // [B, T]
  torch::Tensor m = MaskOf(mask, kl);
  sum_ += (kl * m).sum().item<double>();
  count_ += static_cast<int64_t>(m.sum().item<double>());
}

void PerplexityAccumulator::Add(const torch::Tensor& logits,
                                const torch::Tensor& ids,
                                const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  const int64_t t = ids.size(1);
  if (t < 2) return;
  torch::Tensor lp = torch::log_softmax(
      logits.detach().narrow(1, 0, t - 1).to(torch::kDouble), -1);
  torch::Tensor target =
      ids.narrow(1, 1, t - 1).to(lp.device(), torch::kLong).unsqueeze(-1);
  torch::Tensor nll =
      -lp.gather(-1, target).squeeze(-1).to(torch::kCPU);  // [B, T-1]
  torch::Tensor m = MaskOf(mask, ids);
  torch::Tensor valid = m.narrow(1, 0, t - 1) * m.narrow(1, 1, t - 1);
  nll_ += (nll * valid).sum().item<double>();
  count_ += static_cast<int64_t>(valid.sum().item<double>());
}

double PerplexityAccumulator::Value() const {
  return count_ > 0 ? std::exp(MeanNll()) : 0.0;
}

BlockSignals ComputeBlockSignals(const torch::Tensor& x0,
                                 const torch::Tensor& x1,
                                 const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  torch::Tensor a = x0.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor b = x1.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor cos =
      (a * b).sum(-1) / (a.norm(2, -1) * b.norm(2, -1)).clamp_min(1e-30);
  cos = cos.clamp(-1.0, 1.0);
  torch::Tensor m = MaskOf(mask, a);
  const double n = m.sum().item<double>();
  BlockSignals s;
  if (n == 0) return s;
  s.angular_distance = (torch::acos(cos) / M_PI * m).sum().item<double>() / n;
  s.block_influence = ((1 - cos) * m).sum().item<double>() / n;
  return s;
}

void LinearMapFitter::Add(const torch::Tensor& x0, const torch::Tensor& x1,
                          const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  const int64_t h = x0.size(-1);
  torch::Tensor a =
      x0.detach().to(torch::kCPU, torch::kDouble).reshape({-1, h});
  torch::Tensor b =
      x1.detach().to(torch::kCPU, torch::kDouble).reshape({-1, x1.size(-1)});
  torch::Tensor m = MaskOf(mask, x0).reshape({-1, 1});
  a = torch::cat({a, torch::ones({a.size(0), 1}, torch::kDouble)}, 1) * m;
  b = b * m;
  torch::Tensor xtx = torch::matmul(a.t(), a), xty = torch::matmul(a.t(), b);
  if (!xtx_.defined()) {
    xtx_ = xtx;
    xty_ = xty;
  } else {
    xtx_ += xtx;
    xty_ += xty;
  }
}

torch::Tensor LinearMapFitter::Solve(double ridge) const {
  const int64_t n = xtx_.size(0);
  const double scale = xtx_.trace().item<double>() / static_cast<double>(n);
  torch::Tensor reg = xtx_ + ridge * scale * torch::eye(n, torch::kDouble);
  return at::linalg_solve(reg, xty_);
}

torch::Tensor LinearMapFitter::Apply(const torch::Tensor& w,
                                     const torch::Tensor& x0) {
  torch::Tensor a = x0.to(torch::kDouble);
  std::vector<int64_t> ones_shape = a.sizes().vec();
  ones_shape.back() = 1;
  a = torch::cat({a, torch::ones(ones_shape, a.options())}, -1);
  return torch::matmul(a, w.to(a.device())).to(x0.scalar_type());
}

}  // namespace lft
