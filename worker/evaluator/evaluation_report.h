// The evaluator's report on one checkpoint, in the layout of the LFT
// paper's Table 1, and its renderings: JSON (report.json), Markdown
// (report.md) and PNG plots (loss.png, kl_vs_k.png). Torch-free, so lftctl
// can parse and print a pulled report without LibTorch. docs/store.md,
// "Evaluation reports", describes the JSON fields.
#ifndef LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_
#define LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lft {

// One row: a way of producing the hidden state that the rest of the teacher
// consumes (docs/algorithms.md, "Evaluation").
struct EvaluationRow {
  // "teacher", "skip", "regression", or the checkpoint's method ("sfm",
  // "fw", "hybrid"; "regression" for a regression checkpoint).
  std::string method;
  // "euler" or "midpoint" for flow rows; "" otherwise.
  std::string solver;
  // Teacher layers the model no longer runs: flow and regression replace
  // [m, n) by one layer (n - m - 1), skip-j removes j layers.
  int64_t layers_removed = 0;
  int64_t skip = 0;  // j of a skip row
  int64_t k = 0;     // solver steps (0 where not applicable)
  int64_t nfe = 0;   // network evaluations (midpoint 2k, regression 1)
  double kl_x = 0, nmse = 0, kl_pq = 0, ppl = 0;

  bool is_flow() const { return !solver.empty(); }
  // "teacher", "skip-2", "regression", "FW k=3 midpoint", ...
  std::string Label() const;
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
  // Title, the table (method | layers removed | k | NFE | KL_x | NMSE |
  // KL_PQ | PPL), the verdict and the block signals.
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

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_EVALUATION_REPORT_H_
