// Recoupling ratio (LFT paper, eq. 6-7): how far the teacher's own pairing
// (x0_i -> x1_i) is from the optimal-transport coupling of a batch.
//
// Given a batch of n latent pairs, cost C[i][j] = ||x0_i - x1_j|| (Euclidean),
// the OT plan M (scaled so rows sum to 1) and R = 1 - trace(M) / n. R = 0 means
// the pairing is already optimal (flows need not cross); R near 1 means
// almost every pair is re-coupled. Torch-free plain C++ on doubles so the
// coordinator and tests use it without LibTorch.
#ifndef LFT_WORKER_MODEL_RECOUPLING_H_
#define LFT_WORKER_MODEL_RECOUPLING_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

// Square cost matrix, row-major, n*n entries.
struct CostMatrix {
  int64_t n = 0;
  std::vector<double> c;
  double at(int64_t i, int64_t j) const { return c[i * n + j]; }
};

// Euclidean distances between rows of x0 and rows of x1 (each n x dim,
// row-major). InvalidArgument if the sizes disagree or n == 0.
absl::StatusOr<CostMatrix> EuclideanCost(const std::vector<double>& x0,
                                         const std::vector<double>& x1,
                                         int64_t n, int64_t dim);

// Minimum-cost perfect assignment (Hungarian algorithm, O(n^3)).
// Returns assignment[i] = column matched to row i. InvalidArgument on an
// empty or non-finite matrix.
absl::StatusOr<std::vector<int64_t>> SolveAssignment(const CostMatrix& cost);

// 1 - (#{i : assignment[i] == i}) / n.
double RecouplingRatioFromAssignment(const std::vector<int64_t>& assignment);

struct SinkhornOptions {
  // Entropic regularisation relative to the mean cost (the cost is divided by
  // its mean before use, so epsilon is scale free).
  double epsilon = 0.01;
  int max_iterations = 2000;
  double tolerance = 1e-9;  // max |row marginal - 1/n| * n
};

// Log-domain Sinkhorn; returns the plan scaled by n (rows and columns sum to
// 1), row-major n*n. InvalidArgument on an empty matrix or epsilon <= 0.
absl::StatusOr<std::vector<double>> SinkhornPlan(
    const CostMatrix& cost, const SinkhornOptions& options);

// R = 1 - trace(plan) / n for a plan scaled as SinkhornPlan returns.
double RecouplingRatioFromPlan(const std::vector<double>& plan, int64_t n);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_RECOUPLING_H_
