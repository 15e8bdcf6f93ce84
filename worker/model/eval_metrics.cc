// Metrics and baselines; see metrics.h. Everything accumulates in float64.
#include "worker/model/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

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

void BlockSignalAccumulator::Add(const torch::Tensor& x0,
                                 const torch::Tensor& x1,
                                 const torch::Tensor& mask) {
  const double n = MaskOf(mask, x0).sum().item<double>();
  if (n == 0) return;
  const BlockSignals s = ComputeBlockSignals(x0, x1, mask);
  angular_ += s.angular_distance * n;
  influence_ += s.block_influence * n;
  tokens_ += n;
}

BlockSignals BlockSignalAccumulator::Value() const {
  BlockSignals s;
  if (tokens_ == 0) return s;
  s.angular_distance = angular_ / tokens_;
  s.block_influence = influence_ / tokens_;
  return s;
}

void ReplacementMetrics::Add(const torch::Tensor& x_hat,
                             const torch::Tensor& x_ref,
                             const torch::Tensor& ref_logits,
                             const torch::Tensor& full_logits,
                             const torch::Tensor& q_logits,
                             const torch::Tensor& ids,
                             const torch::Tensor& mask) {
  if (x_hat.defined()) nmse_.Add(x_hat, x_ref, mask);
  kl_x_.Add(ref_logits, q_logits, mask);
  kl_pq_.Add(full_logits, q_logits, mask);
  ppl_.Add(q_logits, ids, mask);
}

void ReplacementMetrics::AddLocal(const torch::Tensor& x_hat,
                                  const torch::Tensor& x_ref,
                                  const torch::Tensor& lens_hat,
                                  const torch::Tensor& lens_ref,
                                  const torch::Tensor& mask) {
  kl_x_softmax_.Add(x_ref, x_hat, mask);
  kl_x_lens_.Add(lens_ref, lens_hat, mask);
}

double ReplacementMetrics::kl_x_softmax() const {
  return kl_x_softmax_.tokens() > 0 ? kl_x_softmax_.Value()
                                    : std::numeric_limits<double>::quiet_NaN();
}

double ReplacementMetrics::kl_x_lens() const {
  return kl_x_lens_.tokens() > 0 ? kl_x_lens_.Value()
                                 : std::numeric_limits<double>::quiet_NaN();
}

absl::StatusOr<double> RecouplingRatioOfRows(const torch::Tensor& x0,
                                             const torch::Tensor& x1,
                                             bool exact,
                                             const SinkhornOptions& sinkhorn) {
  torch::NoGradGuard ng;
  if (x0.dim() != 2 || x0.sizes() != x1.sizes() || x0.size(0) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("recoupling ratio needs two non-empty [N, D] row sets of "
                     "one shape, got ",
                     c10::str(x0.sizes()), " and ", c10::str(x1.sizes())));
  }
  torch::Tensor a = x0.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor b = x1.detach().to(torch::kCPU, torch::kDouble);
  torch::Tensor c = torch::cdist(a, b).contiguous();
  const int64_t n = c.size(0);
  CostMatrix cost;
  cost.n = n;
  cost.c.assign(c.data_ptr<double>(), c.data_ptr<double>() + n * n);
  if (!exact) {
    auto plan = SinkhornPlan(cost, sinkhorn);
    if (!plan.ok()) return plan.status();
    return RecouplingRatioFromPlan(*plan, n);
  }
  const double bias = 1e-9 * c.mean().item<double>();
  for (int64_t i = 0; i < n; ++i) cost.c[i * n + i] -= bias;
  auto assignment = SolveAssignment(cost);
  if (!assignment.ok()) return assignment.status();
  return RecouplingRatioFromAssignment(*assignment);
}

void RecouplingSample::Add(const torch::Tensor& x0, const torch::Tensor& x1,
                           const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  if (count_ >= max_tokens_) return;
  const int64_t h = x0.size(-1);
  torch::Tensor m = MaskOf(mask, x0).reshape({-1}) > 0;
  torch::Tensor a =
      x0.detach().to(torch::kCPU, torch::kDouble).reshape({-1, h}).index({m});
  torch::Tensor b =
      x1.detach().to(torch::kCPU, torch::kDouble).reshape({-1, h}).index({m});
  const int64_t take = std::min<int64_t>(a.size(0), max_tokens_ - count_);
  if (take <= 0) return;
  x0_.push_back(a.narrow(0, 0, take).clone());
  x1_.push_back(b.narrow(0, 0, take).clone());
  count_ += take;
}

absl::StatusOr<double> RecouplingSample::Ratio(
    bool exact, const SinkhornOptions& sinkhorn) const {
  if (count_ == 0) {
    return absl::FailedPreconditionError(
        "recoupling ratio: no valid tokens were sampled");
  }
  return RecouplingRatioOfRows(torch::cat(x0_), torch::cat(x1_), exact,
                               sinkhorn);
}

void LinearMapFitter::Add(const torch::Tensor& x0, const torch::Tensor& x1,
                          const torch::Tensor& mask) {
  torch::NoGradGuard ng;
  const int64_t h = x0.size(-1);
  const torch::Device device = xtx_.defined() ? xtx_.device() : x0.device();
  torch::Tensor a = x0.detach().to(device, torch::kDouble).reshape({-1, h});
  torch::Tensor b =
      x1.detach().to(device, torch::kDouble).reshape({-1, x1.size(-1)});
  torch::Tensor m = MaskOf(mask, x0).to(device).reshape({-1, 1});
  tokens_ += static_cast<int64_t>(m.sum().item<double>());
  a = torch::cat({a, torch::ones({a.size(0), 1}, a.options())}, 1) * m;
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
  torch::NoGradGuard ng;
  // The sums of A = [x0, 1]: A^T A holds N, sum x and sum x x^T; A^T Y
  // holds sum y and sum x y^T. Centring them separates the bias, so the
  // ridge acts on the covariance alone and is scale-free.
  const int64_t h = xtx_.size(0) - 1;
  const double count = std::max(1.0, xtx_[h][h].item<double>());
  const torch::Tensor sx = xtx_.narrow(0, 0, h).select(1, h);  // [H]
  const torch::Tensor sy = xty_.select(0, h);                  // [H_out]
  const torch::Tensor mx = sx / count, my = sy / count;
  const torch::Tensor cxx =
      xtx_.narrow(0, 0, h).narrow(1, 0, h) - torch::outer(sx, mx);
  const torch::Tensor cxy = xty_.narrow(0, 0, h) - torch::outer(sx, my);
  double scale = cxx.trace().item<double>() / static_cast<double>(h);
  if (!(scale > 0)) scale = 1;  // constant inputs: only the bias is fitted
  const torch::Tensor w =
      at::linalg_solve(cxx + ridge * scale * torch::eye(h, cxx.options()), cxy);
  const torch::Tensor b = my - torch::matmul(mx, w);
  return torch::cat({w, b.unsqueeze(0)}, 0);
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
