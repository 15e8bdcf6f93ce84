#include "worker/model/recoupling.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace lft {

absl::StatusOr<CostMatrix> EuclideanCost(const std::vector<double>& x0,
                                         const std::vector<double>& x1,
                                         int64_t n, int64_t dim) {
  if (n <= 0 || dim <= 0) {
    return absl::InvalidArgumentError(
        "EuclideanCost: n and dim must be positive");
  }
  const size_t want = static_cast<size_t>(n * dim);
  if (x0.size() != want || x1.size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("EuclideanCost: expected ", want, " values per side, got ",
                     x0.size(), " and ", x1.size()));
  }
  CostMatrix m;
  m.n = n;
  m.c.resize(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t d = 0; d < dim; ++d) {
        const double diff = x0[i * dim + d] - x1[j * dim + d];
        s += diff * diff;
      }
      m.c[i * n + j] = std::sqrt(s);
    }
  }
  return m;
}

absl::StatusOr<std::vector<int64_t>> SolveAssignment(const CostMatrix& cost) {
  const int64_t n = cost.n;
  if (n <= 0 || cost.c.size() != static_cast<size_t>(n * n)) {
    return absl::InvalidArgumentError(
        "SolveAssignment: empty or ragged cost matrix");
  }
  for (double v : cost.c) {
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError("SolveAssignment: non-finite cost");
    }
  }
  // Classic potentials formulation (1-based, column 0 is a sentinel).
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> u(n + 1, 0), v(n + 1, 0), minv(n + 1);
  std::vector<int64_t> p(n + 1, 0), way(n + 1, 0);
  std::vector<char> used(n + 1);
  for (int64_t i = 1; i <= n; ++i) {
    p[0] = i;
    int64_t j0 = 0;
    std::fill(minv.begin(), minv.end(), kInf);
    std::fill(used.begin(), used.end(), 0);
    do {
      used[j0] = 1;
      const int64_t i0 = p[j0];
      double delta = kInf;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const double cur = cost.at(i0 - 1, j - 1) - u[i0] - v[j];
        if (cur < minv[j]) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j] < delta) {
          delta = minv[j];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= n; ++j) {
        if (used[j]) {
          u[p[j]] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int64_t j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> assignment(n);
  for (int64_t j = 1; j <= n; ++j) assignment[p[j] - 1] = j - 1;
  return assignment;
}

double RecouplingRatioFromAssignment(const std::vector<int64_t>& assignment) {
  if (assignment.empty()) return 0.0;
  int64_t fixed = 0;
  for (size_t i = 0; i < assignment.size(); ++i) {
    if (assignment[i] == static_cast<int64_t>(i)) ++fixed;
  }
  return 1.0 -
         static_cast<double>(fixed) / static_cast<double>(assignment.size());
}

namespace {
double LogSumExp(const double* v, int64_t n, int64_t stride) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, v[i * stride]);
  if (!std::isfinite(mx)) return mx;
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(v[i * stride] - mx);
  return mx + std::log(s);
}
}  // namespace

absl::StatusOr<std::vector<double>> SinkhornPlan(
    const CostMatrix& cost, const SinkhornOptions& options) {
  const int64_t n = cost.n;
  if (n <= 0 || cost.c.size() != static_cast<size_t>(n * n)) {
    return absl::InvalidArgumentError(
        "SinkhornPlan: empty or ragged cost matrix");
  }
  if (!(options.epsilon > 0)) {
    return absl::InvalidArgumentError("SinkhornPlan: epsilon must be positive");
  }
  double mean = 0;
  for (double v : cost.c) mean += v;
  mean /= static_cast<double>(n * n);
  if (!(mean > 0)) mean = 1.0;  // all-zero cost: any plan is optimal
  // K = -C / (mean * eps) in log space; uniform marginals log(1/n).
  std::vector<double> logk(cost.c.size());
  for (size_t i = 0; i < cost.c.size(); ++i) {
    logk[i] = -cost.c[i] / (mean * options.epsilon);
  }
  const double log_marg = -std::log(static_cast<double>(n));
  std::vector<double> f(n, 0), g(n, 0), tmp(n);
  for (int it = 0; it < options.max_iterations; ++it) {
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) tmp[j] = logk[i * n + j] + g[j];
      f[i] = log_marg - LogSumExp(tmp.data(), n, 1);
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < n; ++i) tmp[i] = logk[i * n + j] + f[i];
      g[j] = log_marg - LogSumExp(tmp.data(), n, 1);
    }
    // Columns are exact after the g update; check the rows every 20
    // iterations (the check costs as much as an update).
    if (it % 20 != 19 && it + 1 != options.max_iterations) continue;
    double err = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) tmp[j] = logk[i * n + j] + g[j];
      err = std::max(
          err,
          std::abs(std::exp(f[i] + LogSumExp(tmp.data(), n, 1)) * n - 1.0));
    }
    if (err < options.tolerance) break;
  }
  std::vector<double> plan(cost.c.size());
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      plan[i * n + j] = std::exp(f[i] + logk[i * n + j] + g[j]) * n;
    }
  }
  return plan;
}

double RecouplingRatioFromPlan(const std::vector<double>& plan, int64_t n) {
  if (n <= 0) return 0.0;
  double tr = 0;
  for (int64_t i = 0; i < n; ++i) tr += plan[i * n + i];
  return 1.0 - tr / static_cast<double>(n);
}

}  // namespace lft
