// The coordinator's core: jobs, their state machine, the task queue with
// leases, the worker registry and trainer rendezvous, all kept durably in a
// StateStore. The gRPC services (grpc_services.h) are thin wrappers over
// this class, and the in-process WorkerControl (client/in_process_control.h)
// calls it directly, so everything here is tested without gRPC.
//
// Job life: Submit creates a PENDING job; Tick() shards its corpus into
// extraction tasks (EXTRACTING); when every shard is done it creates
// trainer_ranks training tasks (TRAINING; with training.streaming they exist
// from the start; a streaming job whose extraction ends with fewer pairs than
// one global batch fails then, since it could never take a step); when the
// group finishes, one evaluation task
// (EVALUATING); then SUCCEEDED. A task that fails more than the retry budget
// fails the job; Cancel moves it to CANCELLED. Leases: a leased task expires
// unless its holder heartbeats; Tick() requeues it (same task id and shard
// index, so the re-run overwrites its outputs) and, for training, re-forms
// the trainer group under a new generation.
//
// Durability: every state transition (every call below that changes a job,
// task or worker, and every Tick) stages its records, writes them to the
// StateStore in one batch and only then changes memory. If the write fails,
// the call returns the store's error (Tick logs it and retries the same
// transition next round) and memory is left as it was, which is what the
// store holds. Soft state is kept in memory only and rebuilt on Open: lease
// renewals from Heartbeat (a lease found at Open gets a fresh grace period),
// when a worker was last seen, and rendezvous joins.
#ifndef LFT_COORDINATOR_COORDINATOR_H_
#define LFT_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/job_state.h"
#include "common/base/prometheus_metrics.h"
#include "coordinator/clock.h"
#include "coordinator/corpus_sharding.h"
#include "coordinator/state_store.h"
#include "latent-store/pair_store.h"
#include "lft/v1/job.pb.h"
#include "lft/v1/worker.pb.h"

namespace lft {

struct CoordinatorOptions {
  // Told to workers at Register; they heartbeat this often.
  int64_t heartbeat_interval_ms = 2000;
  // A lease lasts this long past its last renewal; a worker not seen for
  // this long is forgotten (its heartbeat then gets NOT_FOUND).
  int64_t lease_duration_ms = 10000;
  // Times a task may be leased and then lost or failed before its job fails.
  uint32_t max_task_attempts = 4;
  // Progress events are appended at most this often per job.
  int64_t progress_event_interval_ms = 1000;
  // Longest AcquireTask / Rendezvous wait, whatever the caller asks.
  int64_t max_wait_ms = 30000;
  // A trainer group whose ranks have not all joined after this long is
  // reported in Job.waiting_reason and an event (which ranks are missing,
  // whether any trainer worker holds them).
  int64_t group_notice_ms = 10000;
  // Planning a job's corpus (opening and counting its files) runs on a
  // thread of its own; a job whose planning has not finished after this
  // long fails (a FIFO or a hung mount as a corpus path), and the planning
  // thread is abandoned. 0 = no deadline.
  int64_t planning_deadline_ms = 600000;
  // Optional: a job whose trainer group has not formed within this long
  // fails, naming the missing ranks. 0 = wait for ranks forever.
  int64_t group_deadline_ms = 0;
  // Copied into every task (Task.store_address).
  std::string store_address;
  // Submit checks the files a spec names (coordinator/job_inputs.h) and
  // refuses a job whose teacher, corpus or held-out files are missing or
  // malformed here. Turn off only where the coordinator cannot see the
  // workers' files (lft-coordinator --skip-input-checks); workers then find
  // such problems when they start a task.
  bool check_inputs_at_submit = true;
  // The latent store whose per-job lifecycle the coordinator owns: it
  // registers each job (hidden width from the teacher's config.json, codec,
  // streaming bound) before the first extraction task exists, deletes a
  // terminal job's pairs after pair_retention_ms, and serves Delete. Not
  // owned; may be null (no store lifecycle: workers register jobs
  // themselves, Delete is FailedPrecondition).
  PairStore* latent_store = nullptr;
  // How long a job's pairs stay in the store after it ended (SUCCEEDED,
  // FAILED or CANCELLED); checkpoints and reports stay until Delete.
  // Default one day (docs/operations.md, "Data lifecycle"); <= 0 keeps
  // pairs until Delete.
  int64_t pair_retention_ms = 24 * 3600 * 1000;
  // State writes are refused (ResourceExhausted naming the --db directory)
  // while less than this would stay free there, before RocksDB itself runs
  // out of space (StateStore::Open).
  uint64_t min_free_disk_bytes = StateStore::kDefaultMinFreeDiskBytes;
};

// Thread-safe.
class Coordinator {
 public:
  // Opens the state in `db_path` and reloads every job, task, worker and
  // event; workers and leases found there get a fresh grace period of two
  // leases (time to reconnect and heartbeat).
  // `clock` must outlive the coordinator, and `sharding` every planning
  // thread as well (one blocked past planning_deadline_ms is abandoned, not
  // joined: lft-coordinator's lives for the process); `metrics` may be null.
  // Errors of StateStore::Open, or DataLoss if a record is corrupt.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Open(
      const std::string& db_path, const CoordinatorOptions& options,
      Clock* clock, CorpusSharding* sharding, MetricsRegistry* metrics);
  ~Coordinator();

  // ---- JobService ----

  // Defaults and validates the spec and, with check_inputs_at_submit, the
  // files it names (teacher directory with weight shapes against its
  // config.json, corpus, held-out files; globs in corpus.jsonl_zst_paths are
  // expanded into the stored spec), then creates a PENDING job.
  // InvalidArgument listing every problem "field: message" at once;
  // Unimplemented for job kinds other than COMPRESS. A repeated request_id
  // returns the job created the first time.
  absl::StatusOr<lft::v1::Job> Submit(const lft::v1::SubmitJobRequest& request);
  // NotFound if no job has that id.
  absl::StatusOr<lft::v1::Job> GetJob(const std::string& job_id);
  // Newest first; InvalidArgument for a bad page_token.
  absl::StatusOr<lft::v1::ListJobsResponse> ListJobs(
      const lft::v1::ListJobsRequest& request);
  // Moves a non-terminal job to CANCELLED and cancels its open tasks (their
  // holders see them revoked at the next heartbeat). NotFound;
  // FailedPrecondition if the job already finished.
  absl::StatusOr<lft::v1::Job> Cancel(const std::string& job_id);
  // Deletes the job's pairs, checkpoints and reports from the latent store
  // (returning their disk space) and records it in the job
  // (data_deleted_unix_ms); the job's record and events stay. A running job
  // is FailedPrecondition unless `force`, which cancels it first. NotFound
  // for an unknown job; FailedPrecondition without a latent_store; the
  // store's error (e.g. Unavailable: retry) with nothing recorded. Deleting
  // again is OK.
  absl::StatusOr<lft::v1::Job> Delete(const std::string& job_id, bool force);
  // Events of the job with sequence > after_sequence, waiting up to
  // `timeout` for at least one. *finished is set when the job is terminal
  // and the returned events are its last. NotFound for an unknown job;
  // Unavailable when the coordinator shuts down.
  absl::StatusOr<std::vector<lft::v1::JobEvent>> WaitForEvents(
      const std::string& job_id, uint64_t after_sequence,
      absl::Duration timeout, bool* finished);

  // ---- WorkerService ----

  // Adds (or, for the same hostname+role+device, re-admits) a worker.
  // InvalidArgument if the role is unset.
  absl::StatusOr<lft::v1::RegisterResponse> Register(
      const lft::v1::RegisterRequest& request);
  // Renews the leases of the listed tasks the worker still holds; lists the
  // others as revoked. NotFound if the worker is unknown (register again).
  absl::StatusOr<lft::v1::HeartbeatResponse> Heartbeat(
      const lft::v1::HeartbeatRequest& request);
  // The oldest queued task for the worker's role, now leased to it, waiting
  // up to wait_ms for one; a response without task if none came. NotFound
  // for an unknown worker.
  absl::StatusOr<lft::v1::AcquireTaskResponse> AcquireTask(
      const lft::v1::AcquireTaskRequest& request);
  // Records progress; keep_going is false when the worker no longer holds
  // the task. NotFound for an unknown worker or task.
  absl::StatusOr<lft::v1::ReportProgressResponse> ReportProgress(
      const lft::v1::ReportProgressRequest& request);
  // Success or failure of a task the worker holds; advances the job.
  // NotFound for an unknown worker or task; FailedPrecondition if the
  // worker no longer holds the task's lease (nothing is changed).
  absl::StatusOr<lft::v1::CompleteTaskResponse> CompleteTask(
      const lft::v1::CompleteTaskRequest& request);
  // Blocks until all world_size ranks of the task's generation joined and
  // rank 0 published its communicator id; the response names the
  // checkpoint the generation resumes from (the job's latest). Aborted if the
  // generation was dissolved (or the job ended); InvalidArgument if rank 0
  // sends no id; DeadlineExceeded after `max_wait` (retry); FailedPrecondition
  // if the worker does not hold the task.
  absl::StatusOr<lft::v1::RendezvousResponse> Rendezvous(
      const lft::v1::RendezvousRequest& request, absl::Duration max_wait);

  // ---- Background work ----

  // One round of: sharding PENDING jobs (registering each with the latent
  // store first), expiring leases, forgetting silent workers, deleting the
  // pairs of jobs past their retention, refreshing gauges. Run by the
  // background loop; tests with a FakeClock call it directly.
  void Tick();
  // Calls Tick() every `period` on a thread until Shutdown().
  void StartBackgroundLoop(absl::Duration period);
  // Stops the loop and wakes every waiter (they return Unavailable).
  void Shutdown();

  // ---- Introspection (tests and benchmarks) ----
  std::vector<lft::v1::TaskRecord> TasksOfJob(const std::string& job_id);
  std::vector<lft::v1::WorkerRecord> Workers();
  // The durable state, e.g. to inject write failures
  // (StateStore::SetWriteHookForTesting).
  StateStore* state_store_for_testing() { return store_.get(); }

 private:
  struct TaskCounts {
    int total = 0;
    int unfinished = 0;  // not SUCCEEDED
  };
  // Queue order: oldest job first, then task creation order.
  using QueueKey = std::pair<std::pair<uint64_t, uint64_t>, std::string>;

  // The outcome of one job's corpus planning, filled by its thread.
  struct PlanningResult {
    absl::Mutex mu;
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::StatusOr<std::vector<lft::v1::ExtractionTask>> shards
        ABSL_GUARDED_BY(mu);
  };
  struct Planning {
    std::shared_ptr<PlanningResult> result;
    int64_t started_unix_ms = 0;
  };
  // A trainer generation that has not formed yet: since when (coordinator
  // clock; reset by a coordinator restart) and whether it was reported.
  struct GroupWait {
    uint64_t generation = 0;
    int64_t since_unix_ms = 0;
    bool reported = false;
  };
  struct RendezvousState {
    uint64_t generation = 0;
    std::map<uint32_t, std::string> joined;  // rank -> worker id
    std::string communicator_id;
  };

  // One state transition: its records are staged, written in one batch and
  // only then applied to memory (coordinator.cc).
  class Transition;

  Coordinator(const CoordinatorOptions& options, Clock* clock,
              CorpusSharding* sharding, MetricsRegistry* metrics,
              std::unique_ptr<StateStore> store);
  absl::Status Load();

  // Helpers below require mu_. Those taking a Transition stage their changes
  // in it; nothing reaches memory or disk until its Commit().
  void AppendEvent(Transition* tx, lft::v1::JobRecord* job,
                   const std::string& message, bool with_progress)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetJobState(Transition* tx, lft::v1::JobRecord* job,
                   lft::v1::JobState state, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailJob(Transition* tx, lft::v1::JobRecord* job,
               const std::string& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseOpenTasks(Transition* tx, const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CreateTrainingTasks(Transition* tx, lft::v1::JobRecord* job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AdvanceJob(Transition* tx, lft::v1::JobRecord* job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RequeueTask(Transition* tx, lft::v1::TaskRecord* task,
                   const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReformTrainerGroup(Transition* tx, lft::v1::JobRecord* job,
                          const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the job's per-phase progress, as `tx` sees the tasks, into *out.
  void FillProgress(const Transition& tx, const lft::v1::JobRecord& job,
                    lft::v1::Job* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeProgressEvent(Transition* tx, lft::v1::JobRecord* job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job as Get and List return it: with progress unless terminal.
  lft::v1::Job JobWithProgress(const lft::v1::JobRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<lft::v1::WorkerRecord*> FindWorker(
      const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task if `worker_id` holds its lease, nullptr if it exists but is
  // not (or no longer) leased to the worker; NotFound for an unknown worker
  // or task.
  absl::StatusOr<const lft::v1::TaskRecord*> FindTaskOf(
      const std::string& worker_id, const std::string& task_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  const lft::v1::TaskRecord* FindQueuedTask(lft::v1::WorkerRole role)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNSPECIFIED for a task not in memory.
  lft::v1::TaskState StateInMemory(const std::string& task_id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps queued_ and counts_ in step with a task whose state in memory
  // went from `before` to t.state().
  void IndexTask(lft::v1::TaskState before, const lft::v1::TaskRecord& t)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void CountTransition(lft::v1::TaskState before,
                              lft::v1::TaskState after, TaskCounts* counts);
  // Starts a planning thread for each PENDING job without one; returns
  // their results. Never blocks on the corpus.
  std::vector<std::shared_ptr<PlanningResult>> StartPlanning()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the plans that finished and fails the jobs whose planning is
  // past planning_deadline_ms.
  void ApplyFinishedPlans() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyPlan(
      const std::string& job_id,
      const absl::StatusOr<std::vector<lft::v1::ExtractionTask>>& shards)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Registers PENDING, unplanned jobs with the latent store (CreateStoreJob)
  // before their planning starts; runs without the lock. A store that
  // cannot be reached leaves the job for a later tick.
  void RegisterPendingJobsWithStore() ABSL_LOCKS_EXCLUDED(mu_);
  // Registers the job with the latent store. OK when registered or when
  // the coordinator cannot (no store, teacher config unreadable here: the
  // teachers register it then); Unavailable to retry at the next tick;
  // other errors fail the job.
  absl::Status CreateStoreJob(const std::string& job_id,
                              const lft::v1::JobSpec& spec, bool* created)
      ABSL_LOCKS_EXCLUDED(mu_);
  void ApplyPairRetention() ABSL_LOCKS_EXCLUDED(mu_);
  // The units-per-second of `series` over its recent window after adding
  // (now, done); 0 until the window spans two reports.
  double RecentRate(const std::string& series, int64_t now, uint64_t done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLeases() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reports trainer groups short of ranks past group_notice_ms and fails
  // their jobs past group_deadline_ms.
  void CheckTrainerGroups() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Which ranks of the job's current generation have not joined, and why.
  std::string MissingRanks(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CoordinatorOptions options_;
  Clock* const clock_;
  CorpusSharding* const sharding_;
  MetricsRegistry* const metrics_;
  const std::unique_ptr<StateStore> store_;

  // State below is protected by mu_.
  mutable absl::Mutex mu_;
  absl::CondVar changed_;  // signalled on every change waiters care about
  std::map<std::string, lft::v1::JobRecord> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, lft::v1::TaskRecord> tasks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::string>> job_tasks_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, lft::v1::WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<lft::v1::JobEvent>> events_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, RendezvousState> rendezvous_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, GroupWait> group_waits_ ABSL_GUARDED_BY(mu_);
  // Per job: when its trainer group was last dissolved (clock ms), until the
  // next generation forms; the difference is the group's recovery time.
  std::map<std::string, int64_t> dissolved_unix_ms_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Planning> planning_ ABSL_GUARDED_BY(mu_);
  // Jobs registered with the store (RegisterPendingJobsWithStore) and not
  // planned yet: the outcome, and whether the coordinator created the job
  // there (JobRecord.store_job_created).
  struct StoreRegistration {
    absl::Status status;
    bool created = false;
  };
  std::map<std::string, StoreRegistration> store_registrations_
      ABSL_GUARDED_BY(mu_);
  // Indexes over tasks_ (rebuilt on Load): queued tasks per role, and per
  // job and payload kind how many tasks exist and are unfinished.
  std::map<lft::v1::WorkerRole, std::set<QueueKey>> queued_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::map<int, TaskCounts>> counts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  // Soft state: recent (unix ms, units done) samples per job, phase and
  // stage, for rates and ETAs from the last minute instead of the phase's
  // average (which the start-up of a phase drags down).
  std::map<std::string, std::deque<std::pair<int64_t, uint64_t>>> rates_
      ABSL_GUARDED_BY(mu_);
  uint64_t next_job_number_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_worker_number_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_task_sequence_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;

  std::thread loop_;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_COORDINATOR_H_
