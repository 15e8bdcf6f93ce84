// The seam between the worker control loop (WorkerAgent) and the engines
// that do the work. A real teacher, trainer or evaluator implements
// TaskRunner; the agent handles registration, heartbeats, leases,
// revocation, progress reporting and completion around it. No torch types
// cross this interface.
#ifndef LFT_WORKER_AGENT_TASK_RUNNER_H_
#define LFT_WORKER_AGENT_TASK_RUNNER_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lft/v1/worker.pb.h"

namespace lft {

// Set once when the task must stop: the job was cancelled, the lease was
// lost, the trainer group re-formed or the worker is shutting down.
// Thread-safe.
class CancellationToken {
 public:
  // The first reason wins; later calls do nothing.
  void Cancel(const std::string& reason);
  bool cancelled() const;
  std::string reason() const;
  // Waits up to `timeout`; true if cancelled by then. Runners use it as an
  // interruptible sleep.
  bool WaitFor(absl::Duration timeout) const;

 private:
  mutable absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::string reason_ ABSL_GUARDED_BY(mu_);
};

// Cumulative progress of the running task (not deltas).
struct ProgressUpdate {
  uint64_t tokens_done = 0;
  uint64_t steps_done = 0;
  uint64_t documents_done = 0;
  uint64_t sequences_done = 0;
  double tokens_per_second = 0;
  double loss = 0;
  // Latest checkpoint written (trainers); the group resumes from it.
  std::string checkpoint;
  // The current stage of a task with several (the evaluator: "training the
  // regression baseline" in steps, then "scoring" in sequences) and its own
  // progress; empty for tasks without stages.
  std::string stage;
  uint64_t stage_units_done = 0;
  uint64_t stage_units_total = 0;
  std::string stage_unit;
};

// What a finished task produced.
struct TaskResult {
  uint64_t pairs_written = 0;
  // Training: the final checkpoint; evaluation: where the report went.
  std::string checkpoint;
};

struct RendezvousResult {
  uint32_t rank = 0;
  uint32_t world_size = 0;
  uint64_t generation = 0;
  std::string communicator_id;
  // Chosen by the coordinator for the whole generation; "" starts fresh.
  std::string resume_checkpoint;
};

// Services the agent offers a running task. Valid during Run only.
class TaskContext {
 public:
  virtual ~TaskContext() = default;
  // Sends progress to the coordinator (rate-limited; the latest update
  // wins). Returns false when the task must stop (see cancellation()).
  virtual bool ReportProgress(const ProgressUpdate& update) = 0;
  virtual const CancellationToken& cancellation() const = 0;
  // Trainers: joins the task's generation and blocks until every rank did.
  // Rank 0 passes its communicator id (NCCL unique id / Gloo address),
  // others pass "". Every rank gets the same result, including the
  // checkpoint the coordinator chose to resume from. Aborted if the generation
  // was dissolved (stop and return); Cancelled if the task was cancelled
  // meanwhile.
  virtual absl::StatusOr<RendezvousResult> Rendezvous(
      const std::string& communicator_id) = 0;
};

// Implementations: the teacher (extraction), trainer and evaluator engines
// in worker/, and FakeTaskRunner for tests. One Run at a time per runner.
class TaskRunner {
 public:
  virtual ~TaskRunner() = default;
  // Does `task` (task.payload says which kind) and returns what it produced.
  // Must poll context->cancellation() often (at least once a second) and
  // return Cancelled promptly when it is set; any other error is reported
  // to the coordinator, which retries the task elsewhere up to its budget,
  // so the message should say what failed (file, shard, step).
  virtual absl::StatusOr<TaskResult> Run(const lft::v1::Task& task,
                                         TaskContext* context) = 0;
};

}  // namespace lft

#endif  // LFT_WORKER_AGENT_TASK_RUNNER_H_
