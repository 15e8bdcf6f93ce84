#include "worker/agent/worker_agent.h"

#include <exception>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"

namespace lft {

void CancellationToken::Cancel(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (cancelled_) return;
  cancelled_ = true;
  reason_ = reason;
}

bool CancellationToken::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

std::string CancellationToken::reason() const {
  absl::MutexLock lock(&mu_);
  return reason_;
}

bool CancellationToken::WaitFor(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return cancelled_; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

// The TaskContext handed to the runner for one task.
class WorkerAgent::Context : public TaskContext {
 public:
  Context(WorkerAgent* agent, const lft::v1::Task& task,
          std::shared_ptr<CancellationToken> cancel)
      : agent_(agent), task_(task), cancel_(std::move(cancel)) {}

  bool ReportProgress(const ProgressUpdate& u) override {
    if (cancel_->cancelled()) return false;
    const absl::Time now = absl::Now();
    if (now - last_sent_ <
        absl::Milliseconds(agent_->options_.progress_interval_ms)) {
      pending_ = u;
      has_pending_ = true;
      return true;
    }
    last_sent_ = now;
    has_pending_ = false;
    return Send(u);
  }

  // Sends the last update that the rate limit held back, if any.
  void Flush() {
    if (has_pending_ && !cancel_->cancelled()) {
      has_pending_ = false;
      Send(pending_);
    }
  }

  bool Send(const ProgressUpdate& u) {
    lft::v1::ReportProgressRequest r;
    r.set_worker_id(agent_->worker_id());
    r.set_task_id(task_.task_id());
    r.set_tokens_done(u.tokens_done);
    r.set_steps_done(u.steps_done);
    r.set_documents_done(u.documents_done);
    r.set_sequences_done(u.sequences_done);
    r.set_tokens_per_second(u.tokens_per_second);
    r.set_loss(u.loss);
    r.set_checkpoint(u.checkpoint);
    r.set_stage(u.stage);
    r.set_stage_units_done(u.stage_units_done);
    r.set_stage_units_total(u.stage_units_total);
    r.set_stage_unit(u.stage_unit);
    auto resp = agent_->control_->ReportProgress(r);
    if (resp.ok() && !resp->keep_going()) {
      cancel_->Cancel("the coordinator no longer leases this task to us");
    }
    // Unreachable coordinator: keep working; heartbeats decide the lease.
    return !cancel_->cancelled();
  }

  const CancellationToken& cancellation() const override { return *cancel_; }

  absl::StatusOr<RendezvousResult> Rendezvous(
      const std::string& communicator_id) override {
    if (!task_.has_training()) {
      return absl::FailedPreconditionError(
          "Rendezvous is for training tasks only");
    }
    lft::v1::RendezvousRequest r;
    r.set_task_id(task_.task_id());
    r.set_generation(task_.training().generation());
    r.set_communicator_id(communicator_id);
    Backoff backoff(agent_->options_.coordinator_backoff);
    while (!cancel_->cancelled()) {
      r.set_worker_id(agent_->worker_id());
      auto resp = agent_->control_->Rendezvous(r);
      if (resp.ok()) {
        RendezvousResult out;
        out.rank = resp->rank();
        out.world_size = resp->world_size();
        out.generation = resp->generation();
        out.communicator_id = resp->communicator_id();
        out.resume_checkpoint = resp->resume_checkpoint();
        return out;
      }
      const absl::StatusCode code = resp.status().code();
      if (code == absl::StatusCode::kDeadlineExceeded) continue;  // long poll
      if (code != absl::StatusCode::kUnavailable) return resp.status();
      cancel_->WaitFor(backoff.Next());
    }
    return absl::CancelledError(cancel_->reason());
  }

 private:
  WorkerAgent* const agent_;
  const lft::v1::Task task_;
  const std::shared_ptr<CancellationToken> cancel_;
  absl::Time last_sent_ = absl::InfinitePast();
  ProgressUpdate pending_;
  bool has_pending_ = false;
};

WorkerAgent::WorkerAgent(WorkerControl* control, TaskRunner* runner,
                         WorkerAgentOptions options)
    : control_(control), runner_(runner), options_(std::move(options)) {}

WorkerAgent::~WorkerAgent() {
  Stop();
  if (heartbeat_.joinable()) heartbeat_.join();
}

std::string WorkerAgent::worker_id() const {
  absl::MutexLock lock(&mu_);
  return worker_id_;
}

void WorkerAgent::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (current_cancel_) current_cancel_->Cancel("the worker is stopping");
}

absl::Status WorkerAgent::RegisterLocked() {
  lft::v1::RegisterRequest req;
  *req.mutable_info() = options_.info;
  auto resp = control_->Register(req);
  if (!resp.ok()) return resp.status();
  worker_id_ = resp->worker_id();
  heartbeat_interval_ms_ = std::max<int64_t>(50, resp->heartbeat_interval_ms());
  LogInfo("registered with coordinator", {{"worker", worker_id_}});
  return absl::OkStatus();
}

absl::Status WorkerAgent::EnsureRegistered() {
  Backoff backoff(options_.coordinator_backoff);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::CancelledError("stopping");
      if (!worker_id_.empty()) return absl::OkStatus();
      absl::Status s = RegisterLocked();
      if (s.ok()) return s;
      const absl::StatusCode c = s.code();
      if (c != absl::StatusCode::kUnavailable &&
          c != absl::StatusCode::kDeadlineExceeded) {
        return s;
      }
      LogWarning("coordinator unreachable; retrying",
                 {{"error", s.ToString()}});
    }
    SleepUnlessStopping(backoff.Next());
  }
}

void WorkerAgent::HeartbeatLoop() {
  while (true) {
    int64_t interval;
    lft::v1::HeartbeatRequest req;
    std::shared_ptr<CancellationToken> cancel;
    {
      absl::MutexLock lock(&mu_);
      interval = heartbeat_interval_ms_;
      auto stop = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop),
                               absl::Milliseconds(interval)))
        return;
      if (worker_id_.empty()) continue;
      req.set_worker_id(worker_id_);
      if (!current_task_.empty()) req.add_task_ids(current_task_);
      cancel = current_cancel_;
    }
    auto resp = control_->Heartbeat(req);
    if (resp.ok()) {
      if (!resp->revoked_task_ids().empty() && cancel) {
        cancel->Cancel("the coordinator revoked the task");
      }
      continue;
    }
    if (resp.status().code() == absl::StatusCode::kNotFound) {
      // The coordinator forgot us: our lease is gone, register afresh.
      if (cancel) cancel->Cancel("the coordinator forgot this worker");
      absl::MutexLock lock(&mu_);
      if (worker_id_ == req.worker_id()) {
        absl::Status s = RegisterLocked();
        if (!s.ok())
          LogWarning("re-register failed", {{"error", s.ToString()}});
      }
    }
  }
}

// The task runner boundary: a runner's allocation failure (a batch too
// large for this host) or any other exception that escaped it fails the
// task with its cause instead of terminating the worker.
absl::StatusOr<TaskResult> WorkerAgent::RunGuarded(const lft::v1::Task& task,
                                                   TaskContext* context) {
  try {
    return runner_->Run(task, context);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(
        absl::StrCat("task ", task.task_id(),
                     ": out of host memory (std::bad_alloc); lower "
                     "training.global_batch_sequences or sequence_length"));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("task ", task.task_id(), ": ", e.what()));
  }
}

void WorkerAgent::RunTask(const lft::v1::Task& task) {
  auto cancel = std::make_shared<CancellationToken>();
  std::string worker;
  {
    absl::MutexLock lock(&mu_);
    current_task_ = task.task_id();
    current_cancel_ = cancel;
    worker = worker_id_;
    if (stopping_) cancel->Cancel("the worker is stopping");
  }
  LogInfo("task started", {{"task", task.task_id()}, {"worker", worker}});
  Context context(this, task, cancel);
  absl::StatusOr<TaskResult> result = RunGuarded(task, &context);
  if (result.ok()) context.Flush();
  if (cancel->cancelled()) {
    ClearCurrentTask();
    ++tasks_revoked_;
    LogInfo("task stopped",
            {{"task", task.task_id()}, {"reason", cancel->reason()}});
    return;  // the coordinator already moved on; nothing to complete
  }
  lft::v1::CompleteTaskRequest req;
  req.set_worker_id(worker);
  req.set_task_id(task.task_id());
  if (result.ok()) {
    req.set_pairs_written(result->pairs_written);
    req.set_checkpoint(result->checkpoint);
  } else {
    req.set_error(std::string(result.status().message()));
    if (req.error().empty()) req.set_error(result.status().ToString());
  }
  // The task stays current while its completion is retried, so that
  // heartbeats keep renewing its lease through a coordinator restart.
  Backoff backoff(options_.coordinator_backoff);
  const absl::Time give_up = absl::Now() + options_.completion_retry_window;
  while (true) {
    auto resp = control_->CompleteTask(req);
    if (resp.ok()) {
      ClearCurrentTask();
      ++tasks_completed_;
      if (options_.on_completed) options_.on_completed(task, result.ok());
      LogInfo("task completed",
              {{"task", task.task_id()}, {"ok", result.ok()}});
      return;
    }
    const absl::StatusCode c = resp.status().code();
    if ((c != absl::StatusCode::kUnavailable &&
         c != absl::StatusCode::kDeadlineExceeded) ||
        cancel->cancelled() || absl::Now() >= give_up) {
      ClearCurrentTask();
      LogWarning("completion refused", {{"task", task.task_id()},
                                        {"error", resp.status().ToString()}});
      return;
    }
    LogWarning("coordinator unreachable; retrying the completion",
               {{"task", task.task_id()}, {"error", resp.status().ToString()}});
    if (SleepUnlessStopping(backoff.Next())) {
      ClearCurrentTask();
      return;
    }
  }
}

void WorkerAgent::ClearCurrentTask() {
  absl::MutexLock lock(&mu_);
  current_task_.clear();
  current_cancel_.reset();
}

bool WorkerAgent::SleepUnlessStopping(absl::Duration wait) {
  absl::MutexLock lock(&mu_);
  auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  return mu_.AwaitWithTimeout(absl::Condition(&stop), wait);
}

absl::Status WorkerAgent::Run() {
  absl::Status s = EnsureRegistered();
  if (absl::IsCancelled(s)) return absl::OkStatus();
  if (!s.ok()) return s;
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  uint64_t tasks = 0;
  Backoff backoff(options_.coordinator_backoff);
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    if (options_.max_tasks > 0 && tasks >= options_.max_tasks) break;
    s = EnsureRegistered();
    if (absl::IsCancelled(s)) break;
    if (!s.ok()) return s;
    lft::v1::AcquireTaskRequest req;
    req.set_worker_id(worker_id());
    req.set_wait_ms(options_.acquire_wait_ms);
    auto resp = control_->AcquireTask(req);
    if (!resp.ok()) {
      if (resp.status().code() == absl::StatusCode::kNotFound) {
        absl::MutexLock lock(&mu_);
        if (worker_id_ == req.worker_id()) worker_id_.clear();
        continue;
      }
      if (resp.status().code() == absl::StatusCode::kUnauthenticated ||
          resp.status().code() == absl::StatusCode::kPermissionDenied) {
        return resp.status();
      }
      SleepUnlessStopping(backoff.Next());
      continue;
    }
    backoff.Reset();
    if (!resp->has_task()) continue;
    RunTask(resp->task());
    ++tasks;
  }
  Stop();
  if (heartbeat_.joinable()) heartbeat_.join();
  return absl::OkStatus();
}

}  // namespace lft
