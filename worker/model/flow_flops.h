// Model FLOPs of one training step of the latent flow layer, the numerator
// of MFU (docs/benchmarks.md, "Trainer": the formula and why).
//
// Per token and network evaluation, forward: the four matmuls of a GPT-NeoX
// layer, 2 * (3H^2 + H^2 + 2 H I), plus causal attention, 2 * T * H (QK^T
// and PV over the T/2 keys a query sees on average). Backward costs twice
// the forward. Evaluations per step: flow walking with k steps, k (Euler)
// or 2k (midpoint); SFM 1; the hybrid FW + SFM both; the regression
// baseline 1. The AdaLN MLP runs once per sequence and elementwise work is
// not counted: MFU measures matmul work only, as is usual.
#ifndef LFT_WORKER_MODEL_FLOW_FLOPS_H_
#define LFT_WORKER_MODEL_FLOW_FLOPS_H_

#include <cstdint>

namespace lft {

struct FlowFlopsShape {
  int64_t hidden = 0;        // H
  int64_t intermediate = 0;  // I (4H for Pythia)
  int64_t sequence = 0;      // T
  int64_t evaluations = 1;   // network evaluations per step (see above)
};

// Network evaluations per step of a method: "fw" / "hybrid" with
// `fw_steps` and midpoint or Euler, "sfm", "regression".
inline int64_t FlowEvaluationsPerStep(bool flow_walking, bool also_sfm,
                                      int64_t fw_steps, bool midpoint) {
  int64_t e = flow_walking ? fw_steps * (midpoint ? 2 : 1) : 0;
  if (also_sfm || !flow_walking) e += 1;
  return e;
}

// Forward and backward FLOPs of one step, per token of the global batch.
inline double FlowStepFlopsPerToken(const FlowFlopsShape& s) {
  const double h = static_cast<double>(s.hidden);
  const double i = static_cast<double>(s.intermediate);
  const double t = static_cast<double>(s.sequence);
  const double forward = 2.0 * (4.0 * h * h + 2.0 * h * i) + 2.0 * t * h;
  return 3.0 * forward * static_cast<double>(s.evaluations);
}

}  // namespace lft

#endif  // LFT_WORKER_MODEL_FLOW_FLOPS_H_
