// The recoupling-ratio matrix of a teacher (analysis jobs, `lft-analyze`):
// for every block 0 <= m < n <= L, the recoupling ratio R(m, n) of the
// pairs (h_m, h_n) over the same held-out tokens (LFT paper eq. 6-7), with
// the angular distance and Block Influence of each pair of layers. Low R =
// the teacher's own pairing is already the optimal transport = few flow
// crossings = a good block to replace.
//
// Torch-free header (GptNeoX is forward-declared).
#ifndef LFT_WORKER_EVALUATOR_RECOUPLING_MATRIX_H_
#define LFT_WORKER_EVALUATOR_RECOUPLING_MATRIX_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/evaluator/heldout.h"
#include "worker/model/recoupling.h"

namespace lft {

class GptNeoX;

struct RecouplingMatrix {
  std::string teacher;
  int64_t num_layers = 0;  // L
  int64_t tokens = 0;      // valid held-out tokens used
  std::string solver;      // "hungarian" or "sinkhorn"
  // Indexed [m][n]: L rows (m = 0..L-1) of L + 1 columns (n = 0..L); NaN
  // where n <= m.
  std::vector<std::vector<double>> ratio;
  std::vector<std::vector<double>> angular_distance;
  std::vector<std::vector<double>> block_influence;

  // R(m, n) as a text table: one row per m, one column per n = 1..L.
  std::string FormatTable() const;
  // {"format": "lft-recoupling-matrix-1", "teacher", "num_layers", "tokens",
  //  "solver", "ratio", "angular_distance", "block_influence"}; the
  //  matrices as arrays of rows with null where n <= m.
  std::string ToJson() const;
  // A heatmap of R (rows m, columns n) with a colour-scale legend.
  std::string RenderHeatmapPng() const;
};

struct RecouplingMatrixOptions {
  // Valid held-out tokens used (the first ones, in order).
  int64_t max_tokens = 256;
  // Log-domain Sinkhorn instead of the exact assignment.
  bool sinkhorn = false;
  SinkhornOptions sinkhorn_options;
  int64_t batch_sequences = 8;
  // Called after each row m is done (for a progress line).
  std::function<void(int64_t m)> progress;
};

// Runs the teacher over `heldout` once, keeps every hidden state h_0..h_L
// (h_L before the final LayerNorm) of the first max_tokens valid tokens and
// fills the matrices. InvalidArgument for held-out ids outside the
// vocabulary or max_tokens < 2; FailedPrecondition if the held-out set has
// fewer than 2 valid tokens; Internal for torch errors.
absl::StatusOr<RecouplingMatrix> ComputeRecouplingMatrix(
    const GptNeoX& teacher, const HeldOutSet& heldout,
    const RecouplingMatrixOptions& options);

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_RECOUPLING_MATRIX_H_
