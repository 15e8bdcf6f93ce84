// Bounded exponential backoff with jitter, for every wait on a service that
// may come back (a restarted lft-store or coordinator): the n-th wait is
// drawn uniformly from [d/2, d] with d = initial * 2^n capped at `max`, so
// workers that lost the same service do not return in step.
#ifndef LFT_COMMON_BASE_BACKOFF_H_
#define LFT_COMMON_BASE_BACKOFF_H_

#include <algorithm>
#include <cstdint>

#include "absl/random/distributions.h"
#include "absl/random/random.h"
#include "absl/time/time.h"

namespace lft {

struct BackoffPolicy {
  absl::Duration initial = absl::Milliseconds(200);
  absl::Duration max = absl::Seconds(10);
};

// Not thread-safe: one per waiting loop.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}) : policy_(policy) {}

  // The wait before the next try, and the one after it grows.
  absl::Duration Next() {
    const absl::Duration ceiling = std::min(current(), policy_.max);
    ++tries_;
    return ceiling * (0.5 + 0.5 * absl::Uniform(bits_, 0.0, 1.0));
  }
  // After a success: the next wait starts at `initial` again.
  void Reset() { tries_ = 0; }
  uint32_t tries() const { return tries_; }

 private:
  absl::Duration current() const {
    absl::Duration d = policy_.initial;
    for (uint32_t i = 0; i < tries_ && d < policy_.max; ++i) d *= 2;
    return d;
  }

  const BackoffPolicy policy_;
  uint32_t tries_ = 0;
  absl::BitGen bits_;
};

}  // namespace lft

#endif  // LFT_COMMON_BASE_BACKOFF_H_
