// The worker-side control loop, torch-free: registers with the coordinator,
// heartbeats on its own thread (renewing the lease of the running task),
// acquires tasks one at a time, runs them through a TaskRunner, relays
// progress, completes them, and cancels the running task when the
// coordinator revokes it (job cancelled, lease lost, group re-formed). A
// heartbeat answered NOT_FOUND (the coordinator forgot us) makes the agent
// register again and drop the running task, which the coordinator re-runs.
//
// Plugging in an engine: implement TaskRunner (task_runner.h), then
//   GrpcWorkerControl control(channel, token);
//   WorkerAgent agent(&control, &runner, options);
//   agent.Run();  // until Stop()
#ifndef LFT_WORKER_AGENT_WORKER_AGENT_H_
#define LFT_WORKER_AGENT_WORKER_AGENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/backoff.h"
#include "lft/v1/worker.pb.h"
#include "worker/agent/task_runner.h"
#include "worker/agent/worker_control.h"

namespace lft {

struct WorkerAgentOptions {
  lft::v1::WorkerInfo info;
  // How long one AcquireTask call may wait on the coordinator.
  uint32_t acquire_wait_ms = 2000;
  // Progress is sent at most this often.
  int64_t progress_interval_ms = 500;
  // Waits after the coordinator could not be reached: exponential from
  // `initial` to `max`, with jitter (common/base/backoff.h), so a restarted
  // coordinator is not hit by every worker at once. Registration and task
  // acquisition wait forever; a completion is retried for
  // completion_retry_window (the task's lease is renewed meanwhile), then
  // dropped: the coordinator re-runs the task when the lease expires.
  BackoffPolicy coordinator_backoff = {absl::Milliseconds(200),
                                       absl::Seconds(5)};
  absl::Duration completion_retry_window = absl::Minutes(5);
  // Stop after this many tasks (completed or failed); 0 = never (tests).
  uint64_t max_tasks = 0;
  // Called after the coordinator accepted a task's completion (ok = the
  // runner succeeded). Tests record completions through it.
  std::function<void(const lft::v1::Task& task, bool ok)> on_completed;
};

// Thread-safe: Run() on one thread, Stop() from any.
class WorkerAgent {
 public:
  // `control` and `runner` must outlive the agent.
  WorkerAgent(WorkerControl* control, TaskRunner* runner,
              WorkerAgentOptions options);
  ~WorkerAgent();

  // Runs the loop until Stop() or max_tasks. OK then; InvalidArgument /
  // Unauthenticated / PermissionDenied from Register are returned at once
  // (retrying would not help); unreachable coordinators are retried forever.
  absl::Status Run();
  // Makes Run() return soon; cancels the running task.
  void Stop();

  std::string worker_id() const;
  uint64_t tasks_completed() const { return tasks_completed_.load(); }
  uint64_t tasks_revoked() const { return tasks_revoked_.load(); }

 private:
  class Context;
  absl::Status RegisterLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EnsureRegistered();
  void HeartbeatLoop();
  void RunTask(const lft::v1::Task& task);
  absl::StatusOr<TaskResult> RunGuarded(const lft::v1::Task& task,
                                        TaskContext* context);
  void ClearCurrentTask();
  // Waits up to `wait`; true if Stop() was called by then.
  bool SleepUnlessStopping(absl::Duration wait);

  WorkerControl* const control_;
  TaskRunner* const runner_;
  const WorkerAgentOptions options_;
  std::atomic<uint64_t> tasks_completed_{0};
  std::atomic<uint64_t> tasks_revoked_{0};

  // State below is protected by mu_.
  mutable absl::Mutex mu_;
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  int64_t heartbeat_interval_ms_ ABSL_GUARDED_BY(mu_) = 1000;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string current_task_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<CancellationToken> current_cancel_ ABSL_GUARDED_BY(mu_);
  std::thread heartbeat_;
};

}  // namespace lft

#endif  // LFT_WORKER_AGENT_WORKER_AGENT_H_
