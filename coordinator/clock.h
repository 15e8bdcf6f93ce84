// Time source for the coordinator and the worker agent. Leases, heartbeats
// and rates read time through this interface so that unit tests drive them
// with FakeClock instead of sleeping.
#ifndef LFT_COORDINATOR_CLOCK_H_
#define LFT_COORDINATOR_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace lft {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowUnixMs() = 0;
};

// The system clock.
class RealClock : public Clock {
 public:
  int64_t NowUnixMs() override { return absl::ToUnixMillis(absl::Now()); }
};

// A clock that moves only when told to.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_ms = 1'700'000'000'000)
      : now_ms_(start_unix_ms) {}
  int64_t NowUnixMs() override { return now_ms_.load(); }
  void AdvanceMs(int64_t ms) { now_ms_.fetch_add(ms); }

 private:
  std::atomic<int64_t> now_ms_;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_CLOCK_H_
