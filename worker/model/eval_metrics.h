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
#ifndef LFT_WORKER_MODEL_EVAL_METRICS_H_
#define LFT_WORKER_MODEL_EVAL_METRICS_H_

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/model/recoupling.h"

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
  int64_t tokens() const { return count_; }

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

// ComputeBlockSignals over many batches, weighted by valid tokens.
class BlockSignalAccumulator {
 public:
  void Add(const torch::Tensor& x0, const torch::Tensor& x1,
           const torch::Tensor& mask);
  BlockSignals Value() const;

 private:
  double angular_ = 0, influence_ = 0, tokens_ = 0;
};

// One row of the evaluation table: a replacement x_hat of the teacher's own
// state x_ref entering layer r, accumulated over batches.
//   ref_logits  = Tail(x_ref, r)        (KL_x's P: latent matching)
//   full_logits = the teacher's forward (KL_PQ's P: end to end)
//   q_logits    = Tail(x_hat, r)        (Q of both, and the perplexity)
// Pass an undefined x_hat (and x_ref) for a row with no latent to compare
// (the teacher itself): NMSE then stays 0.
//
// AddLocal adds the two local measures of x_hat against x_ref, which look
// at the latent itself rather than through the rest of the network:
//   kl_x_softmax = KL(softmax(x_ref) || softmax(x_hat)), the softmax taken
//                  over the hidden dimension of each token's state;
//   kl_x_lens    = KL(softmax(lens_ref) || softmax(lens_hat)) with
//                  lens_* = Head(x_*) = LM head of the final LayerNorm of
//                  the state (the logit lens), float32 logits [B, T, V].
// Both are NaN until AddLocal has seen a valid token (a row without a
// latent, such as the teacher, has none).
class ReplacementMetrics {
 public:
  void Add(const torch::Tensor& x_hat, const torch::Tensor& x_ref,
           const torch::Tensor& ref_logits, const torch::Tensor& full_logits,
           const torch::Tensor& q_logits, const torch::Tensor& ids,
           const torch::Tensor& mask);
  void AddLocal(const torch::Tensor& x_hat, const torch::Tensor& x_ref,
                const torch::Tensor& lens_hat, const torch::Tensor& lens_ref,
                const torch::Tensor& mask);
  double nmse() const { return nmse_.Value(); }
  double kl_x() const { return kl_x_.Value(); }
  double kl_pq() const { return kl_pq_.Value(); }
  double ppl() const { return ppl_.Value(); }
  double kl_x_softmax() const;
  double kl_x_lens() const;
  const PerplexityAccumulator& perplexity() const { return ppl_; }

 private:
  NmseAccumulator nmse_;
  KlAccumulator kl_x_, kl_pq_, kl_x_softmax_, kl_x_lens_;
  PerplexityAccumulator ppl_;
};

// Recoupling ratio (recoupling.h) of paired rows x0 [N, D], x1 [N, D] (any
// float dtype or device; computed in float64 on the CPU, cost by cdist).
// Exact: Hungarian assignment with the diagonal preferred among plans of
// equal cost (a cost of 1e-9 * mean cost is taken off the diagonal), so
// duplicate rows (the same token's embedding twice) do not count as
// re-coupled. Otherwise log-domain Sinkhorn with `sinkhorn`.
// InvalidArgument if N == 0 or the shapes differ.
absl::StatusOr<double> RecouplingRatioOfRows(
    const torch::Tensor& x0, const torch::Tensor& x1, bool exact = true,
    const SinkhornOptions& sinkhorn = {});

// The first `max_tokens` valid token rows of (x0, x1) [B, T, H] batches, in
// order, for the recoupling ratio of a block over a held-out set.
class RecouplingSample {
 public:
  explicit RecouplingSample(int64_t max_tokens = 256)
      : max_tokens_(max_tokens) {}
  void Add(const torch::Tensor& x0, const torch::Tensor& x1,
           const torch::Tensor& mask);
  int64_t tokens() const { return count_; }
  // RecouplingRatioOfRows over the sample; FailedPrecondition if empty.
  absl::StatusOr<double> Ratio(bool exact = true,
                               const SinkhornOptions& sinkhorn = {}) const;

 private:
  int64_t max_tokens_;
  int64_t count_ = 0;
  std::vector<torch::Tensor> x0_, x1_;  // [rows, H] float64 CPU pieces
};

// Training-free least-squares affine map x1 ~ [x0, 1] W (ReplaceMe-style),
// fitted over valid tokens. The normal equations A^T A and A^T Y (A = [x0,
// 1], [H + 1, H + 1] and [H + 1, H]) are accumulated in float64 on the
// device of the first Add, batch by batch, so memory is O(H^2) whatever
// the number of tokens. Solve centres them (C_xx = sum x x^T - N mean_x
// mean_x^T, C_xy likewise), solves (C_xx + ridge * trace(C_xx) / H * I) W
// = C_xy and sets the bias to mean_y - mean_x W: a ridge of `ridge` times
// the mean diagonal of the centred Gram matrix, the bias unpenalised. So
// the ridge does not depend on the inputs' scale or mean (Pythia's
// residual stream has a few dimensions in the thousands) and keeps the
// solve well-posed when fewer tokens than H + 1 were seen.
class LinearMapFitter {
 public:
  void Add(const torch::Tensor& x0, const torch::Tensor& x1,
           const torch::Tensor& mask);
  // Solves and returns W [H + 1, H] (float64, on the accumulators' device).
  // Requires at least one Add.
  torch::Tensor Solve(double ridge = 1e-6) const;
  // [x0, 1] W in float64, returned in x0's dtype.
  static torch::Tensor Apply(const torch::Tensor& w, const torch::Tensor& x0);
  // Valid tokens added so far.
  int64_t tokens() const { return tokens_; }

 private:
  torch::Tensor xtx_, xty_;
  int64_t tokens_ = 0;
};

}  // namespace lft

#endif  // LFT_WORKER_MODEL_EVAL_METRICS_H_
