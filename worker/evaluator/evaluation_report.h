// The evaluator's report on one checkpoint, in the layout of the LFT
// paper's Table 1, and its renderings: JSON (report.json), Markdown
// (report.md) and PNG plots (loss.png, kl_vs_k.png, nmse_vs_tokens.png).
// Torch-free, so lftctl can parse and print a pulled report without LibTorch.
// docs/store.md, "Evaluation reports", describes the JSON fields.
#ifndef LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_
#define LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lft {

// One row: a way of producing the hidden state that the rest of the teacher
// consumes (docs/algorithms.md, "Evaluation").
struct EvaluationRow {
  // "teacher", "skip", "regression", "linear", or the checkpoint's method
  // ("sfm", "fw", "hybrid"; "regression" for a regression checkpoint).
  std::string method;
  // "euler" or "midpoint" for flow rows; "" otherwise.
  std::string solver;
  // Teacher layers the model no longer runs: flow and regression replace
  // [m, n) by one layer (n - m - 1), the linear map by no layer (n - m),
  // skip-j removes j layers.
  int64_t layers_removed = 0;
  int64_t skip = 0;  // j of a skip row
  int64_t k = 0;     // solver steps (0 where not applicable)
  // Network evaluations: k (Euler) or 2k (midpoint), regression 1; 0 for
  // rows that run no layer (teacher, skip, linear: one H x H matmul).
  int64_t nfe = 0;
  double kl_x = 0, nmse = 0, kl_pq = 0, ppl = 0;
  // Local latent measures (docs/algorithms.md, "Evaluation"): NaN for rows
  // without an x_hat (the teacher) and in reports of earlier versions,
  // written as JSON null and shown as "-".
  double kl_x_softmax = std::numeric_limits<double>::quiet_NaN();
  double kl_x_lens = std::numeric_limits<double>::quiet_NaN();

  bool is_flow() const { return !solver.empty(); }
  // "teacher", "skip-2", "regression", "FW k=3 midpoint", ...
  std::string Label() const;
};

// One stored training checkpoint scored on the held-out block pairs
// (h_m, h_n) alone: the training curve of the paper's Figure 4.
struct CurvePoint {
  std::string checkpoint;  // store name (step-N)
  uint64_t step = 0;
  uint64_t tokens = 0;      // training tokens consumed up to the checkpoint
  int64_t k = 0;            // solver steps of `nmse` (the job's training k)
  std::string solver;       // "euler" / "midpoint" ("" for a regression layer)
  double nmse = 0;          // of x1_hat after k steps
  double nmse_k1 = 0;       // of x1_hat after one step of the same solver
  double kl_x_softmax = 0;  // of the k-step x1_hat
};

struct EvaluationReport {
  std::string job;
  std::string checkpoint;  // store name of the evaluated checkpoint
  std::string teacher;     // teacher directory
  int64_t num_layers = 0;  // L of the teacher
  int64_t first_layer = 0, end_layer = 0;  // the block [m, n)
  std::string method;                      // checkpoint's training method
  uint64_t checkpoint_step = 0;
  uint64_t checkpoint_tokens = 0;
  std::vector<double> losses;  // checkpoint's training loss per step

  std::vector<std::string> heldout_files;
  int64_t sequence_length = 0;
  int64_t heldout_sequences = 0;
  int64_t heldout_tokens = 0;    // valid tokens
  int64_t predicted_tokens = 0;  // targets counted by the perplexity

  double teacher_ppl = 0;
  double angular_distance = 0;  // between h_m and h_n, token mean
  double block_influence = 0;   // 1 - cos
  double recoupling_ratio = 0;  // exact assignment
  int64_t recoupling_tokens = 0;

  int64_t regression_steps = 0;  // 0: no regression baseline trained
  double regression_final_loss = 0;
  // Valid tokens of the pairs the regression baseline trained on (steps x
  // batch x sequence length for full-length pairs).
  int64_t regression_tokens = 0;
  // Valid tokens the linear baseline was fitted on (0: none fitted).
  int64_t linear_tokens = 0;

  // Every stored training checkpoint of the job, by step; empty unless the
  // plan asked for the curve (evaluation.score_checkpoint_curve).
  std::vector<CurvePoint> curve;

  std::vector<EvaluationRow> rows;

  // The row of method / k / solver (skip rows: method "skip", k = j);
  // nullptr if absent.
  const EvaluationRow* Find(const std::string& method, int64_t k = 0,
                            const std::string& solver = "") const;
  // The flow row with the lowest KL_PQ (ties: fewer NFE); nullptr if none.
  const EvaluationRow* BestFlowRow() const;
  // One sentence: does the flow layer at its best k beat skip-(n - m - 1),
  // the skip baseline that removes as many layers, on KL_PQ and on PPL?
  std::string Verdict() const;

  std::string ToJson() const;
  // Title, the table (method | layers removed | k | NFE | KL_x | KL_x
  // softmax | KL_x lens | NMSE | KL_PQ | PPL), the verdict, the block
  // signals and the training curve if there is one.
  std::string ToMarkdown() const;
};

// Parses ToJson()'s output. InvalidArgument naming the field if it is not a
// report of this format.
absl::StatusOr<EvaluationReport> ParseEvaluationReport(absl::string_view json);

// PNG images: the checkpoint's training loss against step (FailedPrecondition
// if it has no losses), and KL_PQ and KL_x against k, one line per solver,
// with the skip and regression rows as horizontal lines
// (FailedPrecondition if there is no flow row).
absl::StatusOr<std::string> RenderLossPlot(const EvaluationReport& report);
absl::StatusOr<std::string> RenderKlPlot(const EvaluationReport& report);
// NMSE (k steps, and k = 1) of every curve point against training tokens,
// log10 y axis (FailedPrecondition if the report has no curve).
absl::StatusOr<std::string> RenderCurvePlot(const EvaluationReport& report);

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_
