// In-process trainer ranks for tests and benchmarks: a rendezvous of W
// threads standing in for the coordinator's (tests/unit/coordinator covers
// that one) and the TaskContext each rank's TrainerRunner runs under.
#ifndef LFT_TESTS_UNIT_WORKER_TRAINER_IN_PROCESS_GROUP_H_
#define LFT_TESTS_UNIT_WORKER_TRAINER_IN_PROCESS_GROUP_H_

#include <cstdint>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "worker/agent/task_runner.h"

namespace lft {

// Rendezvous of W in-process ranks: rank 0's id reaches everyone, and so
// does the checkpoint to resume from, which the test chooses as the
// coordinator would (the job's latest checkpoint).
class FakeRendezvous {
 public:
  explicit FakeRendezvous(uint32_t world, std::string resume_checkpoint = "")
      : world_(world), resume_checkpoint_(std::move(resume_checkpoint)) {}
  absl::StatusOr<RendezvousResult> Join(uint32_t rank, const std::string& id) {
    absl::MutexLock lock(&mu_);
    if (rank == 0) id_ = id;
    ++joined_;
    auto ready = [this]() { return joined_ >= world_ && !id_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(30)))
      return absl::DeadlineExceededError("rendezvous timed out");
    RendezvousResult r;
    r.rank = rank;
    r.world_size = world_;
    r.communicator_id = id_;
    r.resume_checkpoint = resume_checkpoint_;
    return r;
  }

 private:
  const uint32_t world_;
  const std::string resume_checkpoint_;
  absl::Mutex mu_;
  uint32_t joined_ = 0;
  std::string id_;
};

class InProcessRankContext : public TaskContext {
 public:
  InProcessRankContext(FakeRendezvous* rv, uint32_t rank)
      : rv_(rv), rank_(rank) {}
  bool ReportProgress(const ProgressUpdate& update) override {
    last = update;
    if (stop_at_step > 0 && update.steps_done >= stop_at_step)
      token.Cancel("test stop");
    return !token.cancelled();
  }
  const CancellationToken& cancellation() const override { return token; }
  absl::StatusOr<RendezvousResult> Rendezvous(const std::string& id) override {
    return rv_->Join(rank_, id);
  }
  CancellationToken token;
  ProgressUpdate last;
  uint64_t stop_at_step = 0;

 private:
  FakeRendezvous* rv_;
  uint32_t rank_;
};

}  // namespace lft

#endif  // LFT_TESTS_UNIT_WORKER_TRAINER_IN_PROCESS_GROUP_H_
