// Latent flow layer, solvers and losses; see flow_layer.h.
#include "worker/model/flow_layer.h"

#include <cmath>

#include "worker/kernels/fused_ops.h"

namespace lft {
namespace {

// [B] -> [B, 1, ..., 1] with x's rank.
torch::Tensor Bcast(const torch::Tensor& t, const torch::Tensor& x) {
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = x.size(0);
  return t.to(x.scalar_type()).view(shape);
}

// The times of one solver step from t0 to t1 (both [B]): it moves x over
// d = t1 - t0; the midpoint rule also evaluates at mid = t0 + d / 2.
struct SolverStepTimes {
  torch::Tensor t0, d, half, mid;
};
SolverStepTimes TimesBetween(const torch::Tensor& t0, const torch::Tensor& t1,
                             StepRule rule) {
  SolverStepTimes s;
  s.t0 = t0;
  s.d = t1 - t0;
  if (rule == StepRule::kMidpoint) {
    s.half = s.d * 0.5;
    s.mid = t0 + s.half;
  }
  return s;
}
// Step i of a time grid [B, k + 1].
SolverStepTimes StepTimes(const torch::Tensor& grid, int64_t i, StepRule rule) {
  return TimesBetween(grid.select(1, i), grid.select(1, i + 1), rule);
}

// One solver step; *evaluation counts u's calls.
torch::Tensor StepWith(const IndexedVelocityFn& u, const torch::Tensor& x,
                       const SolverStepTimes& s, StepRule rule,
                       int64_t* evaluation) {
  // SolverUpdate (worker/kernels/fused_ops.h) is x + d u: addcmul with d
  // broadcast, or one fused pass on the GPU.
  if (rule == StepRule::kEuler)
    return SolverUpdate(x, s.d, u(x, s.t0, (*evaluation)++));
  torch::Tensor mid = SolverUpdate(x, s.half, u(x, s.t0, (*evaluation)++));
  return SolverUpdate(x, s.d, u(mid, s.mid, (*evaluation)++));
}

IndexedVelocityFn Indexed(const VelocityFn& u) {
  return [&u](const torch::Tensor& x, const torch::Tensor& t, int64_t) {
    return u(x, t);
  };
}

torch::Tensor Param(const torch::Tensor& t, const FlowLayerOptions& o) {
  if (!t.defined()) return t;
  return t.detach().to(o.device, o.dtype).clone();
}

}  // namespace

torch::Tensor TimestepEmbedding(const torch::Tensor& t, int64_t dim) {
  const int64_t half = dim / 2;
  auto opts = torch::TensorOptions().dtype(t.scalar_type()).device(t.device());
  torch::Tensor freqs =
      torch::exp(-std::log(10000.0) * torch::arange(0, half, opts) /
                 static_cast<double>(half));
  torch::Tensor args = (t * 1000.0).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, 1);
}

FlowLayerImpl::FlowLayerImpl(const NeoXLayerWeights& tw,
                             const NeoXLayerShape& shape,
                             const FlowLayerOptions& o)
    : shape_(shape), embed_dim_(o.time_embed_dim) {
  torch::NoGradGuard no_grad;
  w_.ln1_w = register_parameter("ln1_w", Param(tw.ln1_w, o));
  w_.ln1_b = register_parameter("ln1_b", Param(tw.ln1_b, o));
  w_.ln2_w = register_parameter("ln2_w", Param(tw.ln2_w, o));
  w_.ln2_b = register_parameter("ln2_b", Param(tw.ln2_b, o));
  w_.qkv_w = register_parameter("qkv_w", Param(tw.qkv_w, o));
  if (tw.qkv_b.defined())
    w_.qkv_b = register_parameter("qkv_b", Param(tw.qkv_b, o));
  w_.dense_w = register_parameter("dense_w", Param(tw.dense_w, o));
  if (tw.dense_b.defined())
    w_.dense_b = register_parameter("dense_b", Param(tw.dense_b, o));
  w_.fc1_w = register_parameter("fc1_w", Param(tw.fc1_w, o));
  w_.fc1_b = register_parameter("fc1_b", Param(tw.fc1_b, o));
  w_.fc2_w = register_parameter("fc2_w", Param(tw.fc2_w, o));
  w_.fc2_b = register_parameter("fc2_b", Param(tw.fc2_b, o));

  const int64_t h = shape.hidden;
  ada_in_ = register_module("ada_in", torch::nn::Linear(embed_dim_, h));
  ada_out_ = register_module("ada_out", torch::nn::Linear(h, 6 * h));
  auto gen = at::detail::createCPUGenerator(o.seed);
  ada_in_->weight.copy_(at::normal(0.0, 0.02, {h, embed_dim_}, gen));
  ada_in_->bias.zero_();
  ada_out_->weight.zero_();
  torch::Tensor bias = torch::zeros({6, h});
  if (o.init == FlowInit::kTeacherLayer) {
    bias[2].fill_(1.0);  // alpha1
    bias[5].fill_(1.0);  // alpha2
  }
  ada_out_->bias.copy_(bias.view({6 * h}));
  ada_in_->to(o.device, o.dtype);
  ada_out_->to(o.device, o.dtype);
}

FlowEvalWeights FlowLayerImpl::EvalWeights() const {
  FlowEvalWeights e;
  e.layer = w_;
  e.ada_in_w = ada_in_->weight;
  e.ada_in_b = ada_in_->bias;
  e.ada_out_w = ada_out_->weight;
  e.ada_out_b = ada_out_->bias;
  return e;
}

FlowEvalWeights FlowLayerImpl::EvalWeights(torch::ScalarType dtype) const {
  return EvalWeights([dtype](const torch::Tensor& t) {
    return t.scalar_type() == dtype ? t : t.to(dtype);
  });
}

FlowEvalWeights FlowLayerImpl::EvalWeights(
    const std::function<torch::Tensor(const torch::Tensor&)>& f) const {
  FlowEvalWeights e = EvalWeights();
  for (torch::Tensor* t :
       {&e.layer.ln1_w, &e.layer.ln1_b, &e.layer.ln2_w, &e.layer.ln2_b,
        &e.layer.qkv_w, &e.layer.qkv_b, &e.layer.dense_w, &e.layer.dense_b,
        &e.layer.fc1_w, &e.layer.fc1_b, &e.layer.fc2_w, &e.layer.fc2_b,
        &e.ada_in_w, &e.ada_in_b, &e.ada_out_w, &e.ada_out_b}) {
    if (t->defined()) *t = f(*t);
  }
  return e;
}

torch::Tensor FlowLayerImpl::Factors(const torch::Tensor& t) {
  return Factors(t, EvalWeights());
}

torch::Tensor FlowLayerImpl::Factors(const torch::Tensor& t,
                                     const FlowEvalWeights& w) {
  const auto wtype = w.ada_in_w.scalar_type();
  const auto etype = wtype == torch::kDouble ? torch::kDouble : torch::kFloat;
  torch::Tensor e =
      TimestepEmbedding(t.to(w.ada_in_w.device(), etype), embed_dim_).to(wtype);
  // BiasLinear: linear()'s addmm on these 2-D inputs (the same bits), and
  // the weights' gradients reach their sinks (fused_ops.h).
  return BiasLinear(torch::silu(BiasLinear(e, w.ada_in_w, w.ada_in_b)),
                    w.ada_out_w, w.ada_out_b)
      .view({t.size(0), 6, shape_.hidden});
}

std::vector<torch::Tensor> FlowLayerImpl::FactorsAt(const torch::Tensor& t,
                                                    const FlowEvalWeights& w) {
  const int64_t e = t.size(0), b = t.size(1);
  return Factors(t.reshape({e * b}), w)
      .view({e, b, 6, shape_.hidden})
      .unbind(0);
}

torch::Tensor FlowLayerImpl::Block(const torch::Tensor& x,
                                   const torch::Tensor& t) {
  return x + Velocity(x, t);
}

torch::Tensor FlowLayerImpl::Velocity(const torch::Tensor& x,
                                      const torch::Tensor& t,
                                      const FlowEvalWeights& w) {
  return VelocityWithFactors(x, Factors(t, w), w);
}

torch::Tensor FlowLayerImpl::VelocityWithFactors(const torch::Tensor& x_in,
                                                 const torch::Tensor& factors,
                                                 const FlowEvalWeights& w) {
  const auto wtype = w.layer.qkv_w.scalar_type();
  const torch::Tensor x = x_in.scalar_type() == wtype ? x_in : x_in.to(wtype);
  // [B, 1, H] each. unbind's backward is one stack; six selects would each
  // zero-fill a tensor of the factors' size, copy into it and add.
  const std::vector<torch::Tensor> f = factors.unsqueeze(2).unbind(1);
  auto g = [&](int i) { return f[i]; };
  const NeoXLayerWeights& lw = w.layer;
  // LayerNorm, Modulate and GatedBranch (worker/kernels/fused_ops.h) are
  // one pass each over [B, T, H] on the GPU, and elsewhere the
  // layer_norm, addcmul and multiply this function used before.
  torch::Tensor a_in =
      Modulate(LayerNorm(x, lw.ln1_w, lw.ln1_b, shape_.eps), g(0), g(1));
  torch::Tensor attn = GatedBranch(torch::Tensor(), g(2),
                                   NeoXAttention(lw, shape_, a_in, 0, nullptr));
  torch::Tensor m_in = Modulate(
      LayerNorm(shape_.parallel ? x : x + attn, lw.ln2_w, lw.ln2_b, shape_.eps),
      g(3), g(4));
  return GatedBranch(attn, g(5), NeoXMlp(lw, m_in));
}

torch::Tensor SolverStep(const VelocityFn& u, const torch::Tensor& x,
                         const torch::Tensor& t0, const torch::Tensor& t1,
                         StepRule rule) {
  int64_t evaluation = 0;
  return StepWith(Indexed(u), x, TimesBetween(t0, t1, rule), rule, &evaluation);
}

torch::Tensor Integrate(const VelocityFn& u, const torch::Tensor& x0,
                        const std::vector<double>& grid, StepRule rule,
                        std::vector<torch::Tensor>* path) {
  torch::Tensor x = x0;
  if (path) path->push_back(x);
  auto opts =
      torch::TensorOptions().dtype(x0.scalar_type()).device(x0.device());
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    torch::Tensor t0 = torch::full({x0.size(0)}, grid[i], opts);
    torch::Tensor t1 = torch::full({x0.size(0)}, grid[i + 1], opts);
    x = SolverStep(u, x, t0, t1, rule);
    if (path) path->push_back(x);
  }
  return x;
}

std::vector<double> UniformGrid(int64_t k) {
  std::vector<double> g(k + 1);
  for (int64_t i = 0; i <= k; ++i)
    g[i] = static_cast<double>(i) / static_cast<double>(k);
  return g;
}

torch::Tensor MaskedMse(const torch::Tensor& a, const torch::Tensor& b,
                        const torch::Tensor& mask) {
  torch::Tensor sq = (a - b).pow(2);
  if (!mask.defined()) return sq.mean();
  torch::Tensor m = mask.to(sq.scalar_type());
  torch::Tensor per_token = sq.sum(-1);  // [B, T]
  return (per_token * m).sum() / (m.sum().clamp_min(1.0) * sq.size(-1));
}

namespace {

torch::Tensor SfmLossAt(const IndexedVelocityFn& u, const torch::Tensor& x0,
                        const torch::Tensor& x1, const torch::Tensor& mask,
                        const torch::Tensor& times, int64_t evaluation) {
  torch::Tensor t = times.to(x0.device(), x0.scalar_type());
  torch::Tensor tb = Bcast(t, x0);
  torch::Tensor xt = (1 - tb) * x0 + tb * x1;
  return MaskedMse(u(xt, t, evaluation), x1 - x0, mask);
}

// FW's time grid [B, k + 1]: 0, the sorted inner times, 1.
torch::Tensor FwGrid(int64_t b, int64_t k, const torch::Tensor& inner,
                     const torch::Tensor& like) {
  auto opts = like.options();
  std::vector<torch::Tensor> cols = {torch::zeros({b, 1}, opts)};
  if (k > 1) cols.push_back(inner.to(like.device(), like.scalar_type()));
  cols.push_back(torch::ones({b, 1}, opts));
  return torch::cat(cols, 1);
}

torch::Tensor FwLossAt(const IndexedVelocityFn& u, const torch::Tensor& x0,
                       const torch::Tensor& x1, const torch::Tensor& mask,
                       int64_t k, StepRule rule, const torch::Tensor& inner) {
  const torch::Tensor grid = FwGrid(x0.size(0), k, inner, x0);
  torch::Tensor x = x0;
  int64_t e = 0;
  for (int64_t i = 0; i < k; ++i) {
    x = StepWith(u, x, StepTimes(grid, i, rule), rule, &e);
  }
  return MaskedMse(x, x1, mask);
}

torch::Tensor SortedInner(int64_t b, int64_t k, at::Generator& gen) {
  if (k <= 1) return torch::Tensor();
  return std::get<0>(
      at::rand({b, k - 1}, gen, torch::TensorOptions().dtype(torch::kDouble))
          .sort(1));
}

torch::Tensor Uniform(int64_t b, at::Generator& gen) {
  return at::rand({b}, gen, torch::TensorOptions().dtype(torch::kDouble));
}

}  // namespace

torch::Tensor SfmLoss(const VelocityFn& u, const torch::Tensor& x0,
                      const torch::Tensor& x1, const torch::Tensor& mask,
                      at::Generator& gen) {
  return SfmLossAt(Indexed(u), x0, x1, mask, Uniform(x0.size(0), gen), 0);
}

torch::Tensor FwLoss(const VelocityFn& u, const torch::Tensor& x0,
                     const torch::Tensor& x1, const torch::Tensor& mask,
                     int64_t k, StepRule rule, at::Generator& gen) {
  return FwLossAt(Indexed(u), x0, x1, mask, k, rule,
                  SortedInner(x0.size(0), k, gen));
}

FlowTimes DrawFlowTimes(int64_t batch, const FlowLossOptions& o,
                        at::Generator& gen) {
  FlowTimes t;
  if (o.method != FlowMethod::kSfm)
    t.fw_inner = SortedInner(batch, o.fw_steps, gen);
  if (o.method != FlowMethod::kFw) t.sfm = Uniform(batch, gen);
  return t;
}

torch::Tensor FlowLossAt(const VelocityFn& u, const torch::Tensor& x0,
                         const torch::Tensor& x1, const torch::Tensor& mask,
                         const FlowLossOptions& o, const FlowTimes& times) {
  return FlowLossAt(Indexed(u), x0, x1, mask, o, times);
}

torch::Tensor FlowLossAt(const IndexedVelocityFn& u, const torch::Tensor& x0,
                         const torch::Tensor& x1, const torch::Tensor& mask,
                         const FlowLossOptions& o, const FlowTimes& times) {
  switch (o.method) {
    case FlowMethod::kSfm:
      return SfmLossAt(u, x0, x1, mask, times.sfm, 0);
    case FlowMethod::kFw:
      return FwLossAt(u, x0, x1, mask, o.fw_steps, o.rule, times.fw_inner);
    case FlowMethod::kHybrid:
      break;
  }
  // Sequenced: the operands of + may run in either order, and evaluation
  // numbers follow FlowEvaluationTimes' order (FW first).
  torch::Tensor fw =
      FwLossAt(u, x0, x1, mask, o.fw_steps, o.rule, times.fw_inner);
  return fw + o.alpha * SfmLossAt(u, x0, x1, mask, times.sfm,
                                  NetworkEvaluations(o.fw_steps, o.rule));
}

std::vector<torch::Tensor> FlowEvaluationTimes(const FlowLossOptions& o,
                                               const FlowTimes& times,
                                               int64_t batch,
                                               const torch::Tensor& like) {
  std::vector<torch::Tensor> out;
  if (o.method != FlowMethod::kSfm) {
    const torch::Tensor grid = FwGrid(batch, o.fw_steps, times.fw_inner, like);
    for (int64_t i = 0; i < o.fw_steps; ++i) {
      const SolverStepTimes s = StepTimes(grid, i, o.rule);
      out.push_back(s.t0);
      if (o.rule == StepRule::kMidpoint) out.push_back(s.mid);
    }
  }
  if (o.method != FlowMethod::kFw)
    out.push_back(times.sfm.to(like.device(), like.scalar_type()));
  return out;
}

torch::Tensor FlowLoss(const VelocityFn& u, const torch::Tensor& x0,
                       const torch::Tensor& x1, const torch::Tensor& mask,
                       const FlowLossOptions& o, at::Generator& gen) {
  return FlowLossAt(u, x0, x1, mask, o, DrawFlowTimes(x0.size(0), o, gen));
}

}  // namespace lft
