// EvaluateCheckpoint: scores a trained latent flow layer (or regression
// layer) on held-out text beside the teacher, skip-j and the regression
// baseline, producing the rows of the LFT paper's Table 1
// (docs/algorithms.md, "Evaluation", states every row's exact semantics).
//
// Torch-free interface (the teacher and checkpoint are only forward-
// declared), so the runner and tools share it; the .cc catches every torch
// exception.
#ifndef LFT_WORKER_EVALUATOR_CHECKPOINT_EVALUATOR_H_
#define LFT_WORKER_EVALUATOR_CHECKPOINT_EVALUATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "latent-store/pair_store.h"
#include "lft/v1/job.pb.h"
#include "worker/evaluator/evaluation_report.h"
#include "worker/evaluator/heldout.h"

namespace lft {

class GptNeoX;
struct FlowCheckpoint;

struct EvaluationPlan {
  // Solver step counts k scored for a flow checkpoint.
  std::vector<int64_t> steps = {1, 3, 8};
  // "euler" and/or "midpoint".
  std::vector<std::string> solvers = {"euler", "midpoint"};
  // Score skip-1 .. skip-N (those with m + j <= L). skip-(n - m - 1), the
  // baseline removing as many layers as the flow layer, is always scored.
  int64_t skip_baselines = 3;
  // Train and score the regression baseline (needs a TrainingPairSource).
  bool regression_baseline = true;
  // Fit and score the least-squares linear map x0 -> x1 (needs a
  // TrainingPairSource) over up to `linear_tokens` valid training tokens.
  bool linear_baseline = false;
  int64_t linear_tokens = 262144;
  // Held-out sequences per forward pass.
  int64_t batch_sequences = 4;
  // Valid held-out tokens of the block's recoupling ratio.
  int64_t recoupling_tokens = 256;
};

// Settings of the regression baseline: the layer a METHOD_REGRESSION job
// trains (initialised from teacher layer m, masked MSE of Block(x0, t = 0)
// against x1, AdamW, warm-up then cosine), trained through that job's
// TrainingEngine (NewFlowTrainingEngine).
struct RegressionOptions {
  int64_t steps = 100;
  int64_t batch_sequences = 16;
  double learning_rate = 3e-4;
  double min_lr_ratio = 0.1;
  double weight_decay = 0.01;
  int64_t warmup_steps = 10;
  double gradient_clip_norm = 1.0;  // 0 disables clipping
  uint64_t seed = 0;
  // The job whose regression counterpart is trained. The engine gets a copy
  // with training.method METHOD_REGRESSION, the block of the checkpoint
  // scored, and training.weight_decay and seed from the fields above; it
  // loads layer m of job.teacher.path itself (float32), which must hold the
  // teacher being evaluated.
  lft::v1::JobSpec job;
};

// Where the regression baseline's training pairs come from. Not thread-safe.
class TrainingPairSource {
 public:
  virtual ~TrainingPairSource() = default;
  // Fills *pair with the next training pair and returns true; the stream
  // may repeat (epochs). false only if there are no pairs at all.
  virtual absl::StatusOr<bool> Next(LatentPairRecord* pair) = 0;
};

// A job's stored pairs, shuffled with (seed, epoch), epoch after epoch.
// Errors of PairStore::Scan and PairReader::Next, naming the job.
class StorePairSource : public TrainingPairSource {
 public:
  StorePairSource(PairStore* store, std::string job, uint64_t seed);
  ~StorePairSource() override;
  absl::StatusOr<bool> Next(LatentPairRecord* pair) override;

 private:
  PairStore* const store_;
  const std::string job_;
  const uint64_t seed_;
  uint64_t epoch_ = 0;
  bool any_ = false;
  std::unique_ptr<PairReader> reader_;
};

// Called between units of work (one tail pass, one training step, one
// batch), so that cancellation is seen within about a second on a GPU.
struct EvaluationHooks {
  // Returns true to stop: EvaluateCheckpoint then returns Cancelled.
  std::function<bool()> cancelled;
  // Held-out sequences fully scored so far.
  std::function<void(int64_t sequences_done, int64_t tokens_done)> progress;
  // Regression-baseline training steps done of `total` (before scoring).
  std::function<void(int64_t steps_done, int64_t total)> regression_progress;
  // Linear-baseline training tokens accumulated of `total`.
  std::function<void(int64_t tokens_done, int64_t total)> linear_progress;
  // Training-curve checkpoints scored of `total` (ScoreCheckpointCurve).
  std::function<void(int64_t checkpoints_done, int64_t total)> curve_progress;
};

// Scores `checkpoint` (for block [m, n) of `teacher`) on `heldout`.
// Rows, in order: teacher; skip-j; regression (if planned and `pairs` is
// given, or if the checkpoint itself is a regression layer); linear (if
// planned and `pairs` is given); then for a flow checkpoint one row per
// (solver, k). All metrics are masked and token weighted over the whole
// held-out set. The regression baseline trains first
// (TrainRegressionBaseline); the linear map is
// fitted on the pairs of `pairs` that follow, so turning it on leaves the
// regression's training data unchanged. The report's job/checkpoint/
// teacher names, held-out file list and curve are left for the caller.
// Errors: InvalidArgument for a bad plan (k < 1, unknown solver, empty,
// linear_tokens < 1), a checkpoint of another block or teacher
// (RestoreFlowLayer's message), held-out token ids outside the vocabulary,
// or training pairs of another width; TrainRegressionBaseline's errors;
// FailedPrecondition if a baseline has no pairs; Cancelled when
// hooks.cancelled says so; Internal for torch errors.
absl::StatusOr<EvaluationReport> EvaluateCheckpoint(
    const GptNeoX& teacher, const FlowCheckpoint& checkpoint,
    const HeldOutSet& heldout, const EvaluationPlan& plan,
    const RegressionOptions& regression, TrainingPairSource* pairs,
    const EvaluationHooks& hooks = {});

// Trains the regression baseline of block [first_layer, end_layer) on the
// device of `teacher`: a FlowTrainingEngine for a copy of options.job with
// training.method METHOD_REGRESSION, world size 1, driven as TrainerRunner
// drives it (ComputeGradients of options.batch_sequences pairs of `pairs`
// per step, in the order read, then ApplyGradients(1, gradient_clip_norm,
// WarmupCosineLr(learning_rate, min_lr_ratio, warmup_steps, steps, step));
// where the engine overlaps input, the next step's pairs are read and
// staged while the device works). Returns the trained layer as the
// engine's checkpoint (method "regression"; header.step = steps,
// header.tokens = the valid tokens of the pairs consumed, header.losses =
// every step's loss as the engine returned it). hooks.cancelled is polled
// and hooks.regression_progress called before every step. Errors:
// FailedPrecondition if `pairs` holds none; the errors of `pairs`;
// InvalidArgument for options.steps < 1, if options.job names no teacher
// directory, for a block
// outside it or for pairs of another width; NewFlowTrainingEngine's errors
// (naming the directory); Cancelled when hooks.cancelled says so; Internal
// for torch errors.
absl::StatusOr<FlowCheckpoint> TrainRegressionBaseline(
    const GptNeoX& teacher, int64_t first_layer, int64_t end_layer,
    const RegressionOptions& options, TrainingPairSource* pairs,
    const EvaluationHooks& hooks = {});

// How ScoreCheckpointCurve integrates each checkpoint's flow layer.
struct CurvePlan {
  // The job's training k and solver ("euler" or "midpoint").
  int64_t k = 3;
  std::string solver = "midpoint";
  // Held-out sequences per batch of the teacher's pass to layer n.
  int64_t batch_sequences = 4;
};

// The training curve of the paper's Figure 4: every training checkpoint
// (IsTrainingCheckpoint names, step-N) that `store` holds for `job`,
// scored on the held-out block pairs (h_m, h_n) of `heldout` alone (the
// teacher runs layers 0..n-1 once; no tail, no logits): NMSE and
// kl_x_softmax of x1_hat after plan.k steps of plan.solver from h_m, and
// NMSE after one step. A regression checkpoint is scored as its block at
// t = 0 (k = 1, solver ""). Points are ordered by step; an empty vector if
// the job has no training checkpoint. Memory: the held-out pairs (2 x
// sequences x T x H in the teacher's dtype) plus one checkpoint at a time.
// Errors: InvalidArgument for a bad plan or a checkpoint of another block
// or teacher (naming it); the store's errors annotated with the checkpoint
// name; Cancelled when hooks.cancelled says so; Internal for torch errors.
absl::StatusOr<std::vector<CurvePoint>> ScoreCheckpointCurve(
    const GptNeoX& teacher, int64_t first_layer, int64_t end_layer,
    const HeldOutSet& heldout, PairStore* store, const std::string& job,
    const CurvePlan& plan, const EvaluationHooks& hooks = {});

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_CHECKPOINT_EVALUATOR_H_
