// Latent flow layer (velocity estimator), ODE solvers and training losses.
//
// FlowLayer: a teacher-shaped GPT-NeoX layer (same rotary attention, causal,
// positions 0..T-1) with AdaLN. t [B] (one time per sequence) -> sinusoidal
// embedding (dim E) -> Linear(E, H) -> SiLU -> Linear(H, 6H) -> gamma1, beta1,
// alpha1, gamma2, beta2, alpha2, each [B, 1, H]. Parallel form
//   out = x + alpha1 * attn(LN1(x)(1 + gamma1) + beta1)
//           + alpha2 * mlp(LN2(x)(1 + gamma2) + beta2),
// sequential form (non-parallel teacher) h = x + alpha1 * attn(...(x));
// out = h + alpha2 * mlp(LN2(h)(1 + gamma2) + beta2). Velocity u(x, t) = out -
// x, computed as the sum of the gated branches, never as a difference of
// out and x: x is large next to u, and the difference would cost u the bits
// x holds (in bf16, all of them). Init kTeacherLayer copies teacher layer m and
// sets the last AdaLN Linear to weight 0, bias (gates 1, scales/shifts 0), so
// it starts as that layer; kAdaLnZero sets the gates to 0 too (velocity 0 at
// start).
//
// Solvers and losses work on any VelocityFn, x of shape [B, ...] and t [B],
// so the 2D toy study reuses them. Masks are [B, T] (1 = valid token) or
// undefined (all valid).
#ifndef LFT_WORKER_MODEL_FLOW_LAYER_H_
#define LFT_WORKER_MODEL_FLOW_LAYER_H_

#include <torch/torch.h>

#include <functional>
#include <vector>

#include "worker/model/gpt_neox.h"

namespace lft {

enum class FlowInit { kTeacherLayer, kAdaLnZero };
enum class StepRule { kEuler, kMidpoint };
enum class FlowMethod { kSfm, kFw, kHybrid };

struct FlowLayerOptions {
  FlowInit init = FlowInit::kTeacherLayer;
  int64_t time_embed_dim = 128;
  uint64_t seed = 0;
  torch::ScalarType dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
};

// The tensors one evaluation of the layer reads: its parameters, or copies
// of them in a lower precision made once per training step (casts recorded
// by autograd, so gradients reach the float32 parameters). Made once and
// reused by every network evaluation of a step, it replaces autocast, which
// re-dispatches every op to decide a cast.
struct FlowEvalWeights {
  NeoXLayerWeights layer;
  torch::Tensor ada_in_w, ada_in_b, ada_out_w, ada_out_b;
};

class FlowLayerImpl : public torch::nn::Module {
 public:
  FlowLayerImpl(const NeoXLayerWeights& teacher_layer,
                const NeoXLayerShape& shape, const FlowLayerOptions& options);
  // The parameters as they are, or cast to `dtype`.
  FlowEvalWeights EvalWeights() const;
  FlowEvalWeights EvalWeights(torch::ScalarType dtype) const;
  // Each parameter passed through f (a cast, or a view of a copy made for
  // all of them at once).
  FlowEvalWeights EvalWeights(
      const std::function<torch::Tensor(const torch::Tensor&)>& f) const;
  // [B, 6, H]: gamma1, beta1, alpha1, gamma2, beta2, alpha2, in the
  // weights' dtype; the time embedding itself is computed in float32 (t
  // in bf16 would move t * 1000 by whole units).
  torch::Tensor Factors(const torch::Tensor& t);
  torch::Tensor Factors(const torch::Tensor& t, const FlowEvalWeights& w);
  // The factors of E evaluations in one pass: t [E, B] -> E tensors
  // [B, 6, H]. A loss whose times are known before it runs (all of FW's
  // are) makes its AdaLN MLP one batched forward and backward instead of E,
  // and its gradient one stack instead of E accumulations.
  std::vector<torch::Tensor> FactorsAt(const torch::Tensor& t,
                                       const FlowEvalWeights& w);
  // x [B, T, H], t [B] -> block output x + u [B, T, H].
  torch::Tensor Block(const torch::Tensor& x, const torch::Tensor& t);
  // u [B, T, H] in the weights' dtype; x of another dtype is cast first.
  torch::Tensor Velocity(const torch::Tensor& x, const torch::Tensor& t) {
    return Velocity(x, t, EvalWeights());
  }
  torch::Tensor Velocity(const torch::Tensor& x, const torch::Tensor& t,
                         const FlowEvalWeights& w);
  // The same with the factors [B, 6, H] of its times made already.
  torch::Tensor VelocityWithFactors(const torch::Tensor& x,
                                    const torch::Tensor& factors,
                                    const FlowEvalWeights& w);
  const NeoXLayerShape& shape() const { return shape_; }
  const NeoXLayerWeights& weights() const { return w_; }
  torch::nn::Linear ada_in() const { return ada_in_; }
  torch::nn::Linear ada_out() const { return ada_out_; }
  int64_t time_embed_dim() const { return embed_dim_; }

 private:
  NeoXLayerShape shape_;
  NeoXLayerWeights w_;
  int64_t embed_dim_;
  torch::nn::Linear ada_in_{nullptr}, ada_out_{nullptr};
};
TORCH_MODULE(FlowLayer);

// DiT-style sinusoidal embedding of t*1000: [B] -> [B, dim] (cos | sin).
torch::Tensor TimestepEmbedding(const torch::Tensor& t, int64_t dim);

using VelocityFn = std::function<torch::Tensor(const torch::Tensor& x,
                                               const torch::Tensor& t)>;
// u(x, t) told which network evaluation of a loss it is: the e-th call of
// FlowLossAt has t == FlowEvaluationTimes(...)[e], so a velocity can look up
// what it precomputed for that time.
using IndexedVelocityFn = std::function<torch::Tensor(
    const torch::Tensor& x, const torch::Tensor& t, int64_t evaluation)>;

// One step from t0 to t1 (both [B]): Euler x + d u(x, t0) or midpoint
// x + d u(x + d/2 u(x, t0), t0 + d/2).
torch::Tensor SolverStep(const VelocityFn& u, const torch::Tensor& x,
                         const torch::Tensor& t0, const torch::Tensor& t1,
                         StepRule rule);
// Integrates over a time grid shared by the batch (grid[0] -> grid.back()).
// With `path`, every grid point's state is appended (including x0).
torch::Tensor Integrate(const VelocityFn& u, const torch::Tensor& x0,
                        const std::vector<double>& grid, StepRule rule,
                        std::vector<torch::Tensor>* path = nullptr);
// k + 1 evenly spaced points 0, 1/k, ..., 1.
std::vector<double> UniformGrid(int64_t k);
// Network evaluations of an integration with k steps.
inline int64_t NetworkEvaluations(int64_t k, StepRule rule) {
  return rule == StepRule::kMidpoint ? 2 * k : k;
}

// Mean over valid tokens (and over feature dims) of (a - b)^2.
torch::Tensor MaskedMse(const torch::Tensor& a, const torch::Tensor& b,
                        const torch::Tensor& mask);

struct FlowLossOptions {
  FlowMethod method = FlowMethod::kFw;
  int64_t fw_steps = 3;
  StepRule rule = StepRule::kMidpoint;
  double alpha = 0.001;  // hybrid weight of the SFM term
};

// SFM (eq. 3): t ~ U[0,1] per sequence, x_t = (1-t) x0 + t x1, target x1 - x0.
torch::Tensor SfmLoss(const VelocityFn& u, const torch::Tensor& x0,
                      const torch::Tensor& x1, const torch::Tensor& mask,
                      at::Generator& gen);
// FW (eq. 8): sorted t_1 < ... < t_{k-1} ~ U per sequence, k solver steps,
// MSE of the endpoint against x1 (gradients flow through the solver).
torch::Tensor FwLoss(const VelocityFn& u, const torch::Tensor& x0,
                     const torch::Tensor& x1, const torch::Tensor& mask,
                     int64_t k, StepRule rule, at::Generator& gen);
// The random times of one loss evaluation, one row per sequence: FW's inner
// grid points [B, k - 1] (sorted ascending; undefined when k == 1) and SFM's
// t [B] (undefined when unused). Data-parallel trainers draw them per
// sequence from (seed, step, sequence key) so that the times of a sequence do
// not depend on which rank holds it.
struct FlowTimes {
  torch::Tensor fw_inner;
  torch::Tensor sfm;
};
// Draws the times `options.method` needs for a batch of `batch` sequences:
// the FW grid first, then SFM's t (FlowLoss's order), as float64 on the CPU.
FlowTimes DrawFlowTimes(int64_t batch, const FlowLossOptions& options,
                        at::Generator& gen);
// FlowLoss with given times (moved to x0's device and dtype).
torch::Tensor FlowLossAt(const VelocityFn& u, const torch::Tensor& x0,
                         const torch::Tensor& x1, const torch::Tensor& mask,
                         const FlowLossOptions& options,
                         const FlowTimes& times);
torch::Tensor FlowLossAt(const IndexedVelocityFn& u, const torch::Tensor& x0,
                         const torch::Tensor& x1, const torch::Tensor& mask,
                         const FlowLossOptions& options,
                         const FlowTimes& times);
// The times [B] (in `like`'s dtype and device) at which FlowLossAt evaluates
// u for a batch of `batch`, in the order it does: FW's solver evaluations,
// then SFM's. The same operations on the same values as the loss, so the
// same bits.
std::vector<torch::Tensor> FlowEvaluationTimes(const FlowLossOptions& options,
                                               const FlowTimes& times,
                                               int64_t batch,
                                               const torch::Tensor& like);

// Dispatches on options.method; hybrid = FW + alpha * SFM.
torch::Tensor FlowLoss(const VelocityFn& u, const torch::Tensor& x0,
                       const torch::Tensor& x1, const torch::Tensor& mask,
                       const FlowLossOptions& options, at::Generator& gen);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_FLOW_LAYER_H_
