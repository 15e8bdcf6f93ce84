// Evaluation metrics and training-free baselines (LFT paper section 5.1).
//
// All accumulators sum over valid tokens (mask [B, T], 1 = valid; undefined
// = all valid) across any number of batches, so the final value is a
// token-weighted mean over the whole evaluation set, never a mean of
// per-batch values:
//   NMSE  = sum ||x1_hat - x1||^2 / sum ||x1||^2
//   KL    = sum_tokens KL(P || Q) / #tokens, P, Q from float32 logits
//   PPL   = exp(sum NLL / #predicted tokens); position j predicts ids[j + 1]
//           and counts when both j and j + 1 are valid.
#ifndef LFT_WORKER_MODEL_METRICS_H_
#define LFT_WORKER_MODEL_METRICS_H_

#include <torch/torch.h>

#include <cstdint>

namespace lft {

class NmseAccumulator {
 public:
  void Add(const torch::Tensor& x1_hat, const torch::Tensor& x1,
           const torch::Tensor& mask);
  double Value() const { return ref_ > 0 ? err_ / ref_ : 0.0; }

 private:
  double err_ = 0, ref_ = 0;
};

class KlAccumulator {
 public:
  // KL(softmax(p_logits) || softmax(q_logits)) per valid token.
  void Add(const torch::Tensor& p_logits, const torch::Tensor& q_logits,
           const torch::Tensor& mask);
  double Value() const {
    return count_ > 0 ? sum_ / static_cast<double>(count_) : 0.0;
  }

 private:
  double sum_ = 0;
  int64_t count_ = 0;
};

class PerplexityAccumulator {
 public:
  void Add(const torch::Tensor& logits, const torch::Tensor& ids,
           const torch::Tensor& mask);
  double MeanNll() const {
    return count_ > 0 ? nll_ / static_cast<double>(count_) : 0.0;
  }
  double Value() const;
  int64_t tokens() const { return count_; }

 private:
  double nll_ = 0;
  int64_t count_ = 0;
};

// Cheap block-selection signals between hidden_states[m] and [n], averaged
// over valid tokens: angular distance arccos(cos)/pi and Block Influence
// 1 - cos.
struct BlockSignals {
  double angular_distance = 0;
  double block_influence = 0;
};
BlockSignals ComputeBlockSignals(const torch::Tensor& x0,
                                 const torch::Tensor& x1,
                                 const torch::Tensor& mask);

// Training-free least-squares affine map x1 ~ [x0, 1] W (ReplaceMe-style),
// fitted over valid tokens with a small ridge (relative to the Gram trace)
// for conditioning. Accumulate the normal equations batch by batch.
class LinearMapFitter {
 public:
  void Add(const torch::Tensor& x0, const torch::Tensor& x1,
           const torch::Tensor& mask);
  // Solves and returns W [H + 1, H] (float64). Requires at least one Add.
  torch::Tensor Solve(double ridge = 1e-6) const;
  static torch::Tensor Apply(const torch::Tensor& w, const torch::Tensor& x0);

 private:
  torch::Tensor xtx_, xty_;
};

}  // namespace lft

#endif  // LFT_WORKER_MODEL_METRICS_H_
