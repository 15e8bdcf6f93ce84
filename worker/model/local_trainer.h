// Single-process trainer for the latent flow layer, with the evaluation
// table of the paper (NMSE, KL_x, KL_PQ, PPL) for the teacher, skip,
// regression, least-squares linear map and SFM / FW at several k.
//
// Torch-free interface: options and results are plain structs, so the
// coordinator and CLI code can use it without LibTorch.
//
// Data: each step draws a batch of token sequences (from `ids_file`, a
// safetensors with "input_ids" I64 [N, T] and optional "mask" [N, T], or, when
// empty, uniform random tokens from a seeded generator), runs the teacher's
// layers 0..n-1 (extraction mode) and trains on the pairs (x0, x1) =
// (hidden_states[m], hidden_states[n]). Held-out evaluation uses a separate
// stream (the last `eval_batches` batches of the file, or a different seed).
// Optimiser: AdamW, linear warm-up then cosine decay to min_lr_ratio * lr,
// gradient clipping by global norm.
#ifndef LFT_WORKER_MODEL_LOCAL_TRAINER_H_
#define LFT_WORKER_MODEL_LOCAL_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

class GptNeoX;

struct LocalTrainOptions {
  std::string teacher_dir;  // used by the overload without a teacher
  std::string ids_file;     // optional token file, see above
  int64_t m = 1, n = 2;     // replaced block [m, n)
  // Methods to train: any of "regression", "sfm", "fw", "hybrid".
  std::vector<std::string> methods = {"regression", "sfm", "fw"};
  std::vector<int64_t> eval_k = {1, 3};
  int64_t steps = 200;
  int64_t batch_size = 8;
  int64_t seq_len = 32;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.01;
  int64_t warmup_steps = 20;
  double grad_clip = 1.0;
  int64_t fw_steps = 3;
  double hybrid_alpha = 0.001;
  std::string init = "teacher";  // "teacher" (layer m) or "adaln-zero"
  int64_t eval_batches = 4;
  uint64_t seed = 0;
  std::string device = "cpu";  // "cpu" or "cuda"
  std::string dtype = "f32";   // teacher activations: "f32" or "bf16"
  bool verbose = false;
};

struct EvalRow {
  std::string method;  // teacher, skip, linear, regression, sfm, fw, hybrid
  int64_t k = 0;       // solver steps (0 where not applicable)
  int64_t nfe = 0;     // network evaluations (midpoint: 2k)
  double nmse = 0, kl_x = 0, kl_pq = 0, ppl = 0;
};

struct MethodLog {
  std::string method;
  std::vector<double> losses;  // per step
};

struct LocalTrainReport {
  std::vector<MethodLog> logs;
  std::vector<EvalRow> rows;
  double angular_distance = 0;  // held-out, between x0 and x1
  double block_influence = 0;
  double recoupling_ratio = 0;  // exact assignment over eval tokens (<= 256)
  // Markdown table of `rows`.
  std::string FormatTable() const;
  // Row for method/k; nullptr if absent.
  const EvalRow* Find(const std::string& method, int64_t k = 0) const;
};

// Loads the teacher from options.teacher_dir and trains. Errors: those of
// GptNeoX::Load; InvalidArgument for a bad block, method, init, device or
// dtype, or an ids_file without "input_ids".
absl::StatusOr<LocalTrainReport> RunLocalTraining(
    const LocalTrainOptions& options);
// Same with an already loaded teacher (its device and dtype are used).
absl::StatusOr<LocalTrainReport> RunLocalTraining(
    const GptNeoX& teacher, const LocalTrainOptions& options);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_LOCAL_TRAINER_H_
