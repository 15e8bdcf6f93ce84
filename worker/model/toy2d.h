// The LFT paper's 2D toy study: paired points whose straight paths cross.
//
// Pairs: x0 ~ N((-2, s), 0.25^2 I) with s = +1 or -1 (top / bottom blob),
// x1 = x0 + (4, -2 s): the top blob goes to the bottom right and the bottom
// blob to the top right, so the straight paths of the two blobs cross at
// x = 0. A small MLP velocity field u(x, t) (input x and a sinusoidal
// embedding of t) is trained with SFM, FW (k steps, midpoint) or the hybrid
// FW + alpha SFM. The ODE flow of the SFM marginal field cannot cross, so it
// swaps the pairing; FW learns a discrete map that keeps it.
#ifndef LFT_WORKER_MODEL_TOY2D_H_
#define LFT_WORKER_MODEL_TOY2D_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

struct Toy2dOptions {
  std::string method = "fw";  // sfm | fw | hybrid
  double alpha = 0.001;       // hybrid SFM weight
  int64_t fw_steps = 3;
  int64_t train_steps = 1500;
  int64_t batch = 256;
  double lr = 3e-3;
  int64_t hidden = 64;
  uint64_t seed = 0;
  int64_t eval_points = 512;
  int64_t eval_k = 3;        // midpoint steps at evaluation
  int64_t plot_points = 24;  // trajectories kept for plotting
};

struct Toy2dResult {
  std::string method;
  double final_loss = 0;
  // Mean ||x1_hat - x1|| over held-out pairs, midpoint, eval_k steps.
  double endpoint_error = 0;
  // Fraction of held-out points that end nearer the other blob's target.
  double swap_rate = 0;
  // Mean path length over chord length of the eval_k-step trajectory
  // (1 = straight).
  double path_ratio = 0;
  std::vector<std::vector<std::array<double, 2>>> trajectories;
  std::vector<int> blob;  // +1 top, -1 bottom, per trajectory
};

// Trains and evaluates one method. InvalidArgument for an unknown method.
absl::StatusOr<Toy2dResult> RunToy2d(const Toy2dOptions& options);

// Side-by-side panels (one per result) of trajectories, red from the top
// blob, blue from the bottom blob, targets marked in grey.
absl::Status WriteToy2dPng(const std::vector<Toy2dResult>& results,
                           const std::string& path);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_TOY2D_H_
