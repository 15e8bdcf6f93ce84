// The learning-rate schedule every lft trainer uses: linear warm-up over
// `warmup` steps to `lr`, then cosine decay to min_ratio * lr at
// `total_steps`. Torch-free.
#ifndef LFT_WORKER_MODEL_LR_SCHEDULE_H_
#define LFT_WORKER_MODEL_LR_SCHEDULE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace lft {

// Learning rate of 0-based `step`.
inline double WarmupCosineLr(double lr, double min_ratio, int64_t warmup,
                             int64_t total_steps, int64_t step) {
  if (step < warmup) return lr * static_cast<double>(step + 1) / warmup;
  const double span =
      static_cast<double>(std::max<int64_t>(1, total_steps - warmup));
  const double p = std::min(1.0, static_cast<double>(step - warmup) / span);
  return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + std::cos(M_PI * p)));
}

}  // namespace lft

#endif  // LFT_WORKER_MODEL_LR_SCHEDULE_H_
