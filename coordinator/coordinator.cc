#include "coordinator/coordinator.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/job_spec.h"
#include "common/base/job_state.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/base/teacher_config.h"
#include "common/tensor/tensor_codec.h"
#include "coordinator/job_inputs.h"

namespace lft {
namespace {

using lft::v1::Job;
using lft::v1::JobEvent;
using lft::v1::JobRecord;
using lft::v1::JobState;
using lft::v1::TaskRecord;
using lft::v1::TaskState;
using lft::v1::WorkerRecord;
using lft::v1::WorkerRole;

constexpr char kJobsPrefix[] = "jobs/";
constexpr char kTasksPrefix[] = "tasks/";
constexpr char kWorkersPrefix[] = "workers/";
constexpr char kEventsPrefix[] = "events/";
constexpr char kMetaNextJob[] = "meta/next_job_number";
constexpr char kMetaNextWorker[] = "meta/next_worker_number";

std::string EventKey(const std::string& job_id, uint64_t seq) {
  return absl::StrFormat("%s%s/%012d", kEventsPrefix, job_id, seq);
}

WorkerRole RoleOf(const lft::v1::Task& task) {
  switch (task.payload_case()) {
    case lft::v1::Task::kExtraction:
      return lft::v1::WORKER_ROLE_TEACHER;
    case lft::v1::Task::kTraining:
      return lft::v1::WORKER_ROLE_TRAINER;
    case lft::v1::Task::kEvaluation:
      return lft::v1::WORKER_ROLE_EVALUATOR;
    default:
      return lft::v1::WORKER_ROLE_UNSPECIFIED;
  }
}

bool TaskOpen(const TaskRecord& t) {
  return t.state() == lft::v1::TASK_STATE_QUEUED ||
         t.state() == lft::v1::TASK_STATE_LEASED;
}

std::string Describe(const TaskRecord& t) {
  const lft::v1::Task& task = t.task();
  if (task.has_extraction()) {
    const auto& e = task.extraction();
    return absl::StrCat("task ", task.task_id(), " (shard ", e.shard_index(),
                        ": ", e.corpus_path(), " documents [",
                        e.first_document(), ", ", e.end_document(), "))");
  }
  if (task.has_training()) {
    return absl::StrCat("task ", task.task_id(), " (trainer rank ",
                        task.training().rank(), " of ",
                        task.training().world_size(), ")");
  }
  return absl::StrCat("task ", task.task_id(), " (evaluation)");
}

// `rate`: units per second over the recent window (Coordinator::RecentRate);
// 0 leaves rate and ETA unset rather than guessing from the first seconds.
lft::v1::PhaseProgress MakeProgress(JobState phase, const std::string& unit,
                                    uint64_t done, uint64_t total,
                                    double rate) {
  lft::v1::PhaseProgress p;
  p.set_phase(phase);
  p.set_unit(unit);
  p.set_units_done(done);
  p.set_units_total(total);
  if (rate > 0) {
    p.set_units_per_second(rate);
    if (total > done) p.set_eta_seconds((total - done) / rate);
  }
  return p;
}

// How far back RecentRate looks.
constexpr int64_t kRateWindowMs = 60 * 1000;

lft::v1::StorageDtype DefaultedDtype(lft::v1::StorageDtype d) {
  return d == lft::v1::STORAGE_DTYPE_UNSPECIFIED ? lft::v1::STORAGE_DTYPE_BF16
                                                 : d;
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options, Clock* clock,
                         CorpusSharding* sharding, MetricsRegistry* metrics,
                         std::unique_ptr<StateStore> store)
    : options_(options),
      clock_(clock),
      sharding_(sharding),
      metrics_(metrics),
      store_(std::move(store)) {}

Coordinator::~Coordinator() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(
    const std::string& db_path, const CoordinatorOptions& options, Clock* clock,
    CorpusSharding* sharding, MetricsRegistry* metrics) {
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<StateStore> store,
                       StateStore::Open(db_path, options.min_free_disk_bytes));
  std::unique_ptr<Coordinator> c(
      new Coordinator(options, clock, sharding, metrics, std::move(store)));
  LFT_RETURN_IF_ERROR(c->Load());
  return c;
}

absl::Status Coordinator::Load() {
  absl::MutexLock lock(&mu_);
  absl::Status bad;
  auto corrupt = [&bad](absl::string_view key) {
    if (bad.ok()) {
      bad = absl::DataLossError(
          absl::StrCat("coordinator state record ", key, " does not parse"));
    }
  };
  LFT_RETURN_IF_ERROR(store_->Scan(
      kJobsPrefix, [&](absl::string_view k,
                       absl::string_view v) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        JobRecord r;
        if (!r.ParseFromArray(v.data(), static_cast<int>(v.size())))
          return corrupt(k);
        request_ids_[r.request_id()] = r.job().id();
        jobs_[r.job().id()] = std::move(r);
      }));
  request_ids_.erase("");
  std::vector<TaskRecord> tasks;
  LFT_RETURN_IF_ERROR(
      store_->Scan(kTasksPrefix, [&](absl::string_view k, absl::string_view v) {
        TaskRecord r;
        if (!r.ParseFromArray(v.data(), static_cast<int>(v.size())))
          return corrupt(k);
        tasks.push_back(std::move(r));
      }));
  std::sort(tasks.begin(), tasks.end(),
            [](const TaskRecord& a, const TaskRecord& b) {
              return a.sequence() < b.sequence();
            });
  for (TaskRecord& t : tasks) {
    next_task_sequence_ = std::max(next_task_sequence_, t.sequence() + 1);
    job_tasks_[t.task().job_id()].push_back(t.task().task_id());
    TaskRecord& stored = tasks_[t.task().task_id()] = std::move(t);
    // Rebuild the queue index and the per-job counts.
    IndexTask(lft::v1::TASK_STATE_UNSPECIFIED, stored);
  }
  const int64_t now = clock_->NowUnixMs();
  LFT_RETURN_IF_ERROR(store_->Scan(
      kWorkersPrefix,
      [&](absl::string_view k, absl::string_view v)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            WorkerRecord r;
            if (!r.ParseFromArray(v.data(), static_cast<int>(v.size())))
              return corrupt(k);
            // Grace: a worker that survived our restart keeps its leases if it
            // heartbeats within two leases (it first has to reconnect).
            r.set_last_seen_unix_ms(now + options_.lease_duration_ms);
            workers_[r.worker_id()] = std::move(r);
          }));
  LFT_RETURN_IF_ERROR(store_->Scan(
      kEventsPrefix,
      [&](absl::string_view k, absl::string_view v)
          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
            JobEvent e;
            if (!e.ParseFromArray(v.data(), static_cast<int>(v.size())))
              return corrupt(k);
            events_[e.job_id()].push_back(std::move(e));
          }));
  for (auto& [id, task] : tasks_) {
    // Leases are measured from now, with one extra lease for reconnecting:
    // the coordinator was down meanwhile.
    if (task.state() == lft::v1::TASK_STATE_LEASED) {
      task.mutable_task()->set_lease_expiry_unix_ms(
          now + 2 * options_.lease_duration_ms);
    }
  }
  for (const char* key : {kMetaNextJob, kMetaNextWorker}) {
    absl::StatusOr<std::string> v = store_->Get(key);
    uint64_t n = 0;
    if (v.ok() && absl::SimpleAtoi(*v, &n)) {
      (key == kMetaNextJob ? next_job_number_ : next_worker_number_) = n;
    }
  }
  LFT_RETURN_IF_ERROR(bad);
  UpdateGauges();
  LogInfo("coordinator state loaded", {{"jobs", jobs_.size()},
                                       {"tasks", tasks_.size()},
                                       {"workers", workers_.size()}});
  return absl::OkStatus();
}

// ---- Transitions ----

// The staged form of one state transition. Reads see the staged records
// first and memory second; writes go to copies. Commit() writes every
// staged record in one StateStore batch and only then applies the copies to
// memory, so a failed write leaves memory as it was (and as it is on disk).
// Used under mu_ only.
class Coordinator::Transition {
 public:
  explicit Transition(Coordinator* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu_)
      : c_(c), next_task_sequence_(c->next_task_sequence_) {}

  // The job, staged for change. Must exist (in memory or staged).
  JobRecord* Job(const std::string& id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = jobs_.find(id);
    if (it != jobs_.end()) return &it->second;
    return &(jobs_[id] = c_->jobs_.at(id));
  }
  // Stages a new job.
  JobRecord* AddJob(JobRecord record) {
    const std::string id = record.job().id();
    return &(jobs_[id] = std::move(record));
  }
  // The task as this transition sees it, without staging it. Must exist.
  const TaskRecord& PeekTask(const std::string& id) const
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = tasks_.find(id);
    return it != tasks_.end() ? it->second : c_->tasks_.at(id);
  }
  // The task, staged for change. Must exist.
  TaskRecord* Task(const std::string& id) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    auto it = tasks_.find(id);
    if (it != tasks_.end()) return &it->second;
    return &(tasks_[id] = c_->tasks_.at(id));
  }
  // Stages a new task of `job` (state UNSPECIFIED until the caller sets it).
  TaskRecord* NewTask(JobRecord* job, const std::string& task_id,
                      const std::string& store_address) {
    TaskRecord& t = tasks_[task_id];
    t.mutable_task()->set_task_id(task_id);
    t.mutable_task()->set_job_id(job->job().id());
    *t.mutable_task()->mutable_spec() = job->job().spec();
    t.mutable_task()->set_store_address(store_address);
    t.set_sequence(next_task_sequence_++);
    new_tasks_.push_back(task_id);
    return &t;
  }
  // The job's task ids in creation order, those staged here included.
  std::vector<std::string> TaskIds(const std::string& job_id) const
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::vector<std::string> ids;
    auto it = c_->job_tasks_.find(job_id);
    if (it != c_->job_tasks_.end()) ids = it->second;
    for (const std::string& id : new_tasks_) {
      if (tasks_.at(id).task().job_id() == job_id) ids.push_back(id);
    }
    return ids;
  }
  // How many tasks of the job with this payload exist and are unfinished,
  // staged changes included.
  TaskCounts Counts(const std::string& job_id,
                    int payload) const ABSL_NO_THREAD_SAFETY_ANALYSIS {
    TaskCounts counts;
    auto job = c_->counts_.find(job_id);
    if (job != c_->counts_.end()) {
      auto kind = job->second.find(payload);
      if (kind != job->second.end()) counts = kind->second;
    }
    for (const auto& [id, t] : tasks_) {
      if (t.task().job_id() != job_id ||
          static_cast<int>(t.task().payload_case()) != payload) {
        continue;
      }
      const TaskState before = c_->StateInMemory(id);
      Coordinator::CountTransition(before, t.state(), &counts);
    }
    return counts;
  }
  void PutWorker(const WorkerRecord& w) { workers_[w.worker_id()] = w; }
  void DeleteWorker(const std::string& id) { workers_[id] = std::nullopt; }
  void PutMeta(const std::string& key, const std::string& value) {
    meta_.push_back({key, value});
  }
  void AddEvent(JobEvent e) { events_.push_back(std::move(e)); }
  void Log(std::string message, std::string job_id) {
    logs_.emplace_back(std::move(message), std::move(job_id));
  }
  // Memory-only changes (indexes, counters, rendezvous) made after a
  // successful write.
  void AfterCommit(std::function<void()> fn) {
    after_commit_.push_back(std::move(fn));
  }
  bool empty() const {
    return jobs_.empty() && tasks_.empty() && workers_.empty() &&
           meta_.empty() && events_.empty();
  }

  // Writes the staged records in one batch; on success applies them to
  // memory and wakes waiters. On failure returns the write's error and
  // changes nothing.
  absl::Status Commit() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    std::vector<StateStore::Mutation> batch;
    for (const auto& [id, r] : jobs_) {
      batch.push_back({absl::StrCat(kJobsPrefix, id), r.SerializeAsString()});
    }
    for (const auto& [id, t] : tasks_) {
      batch.push_back({absl::StrCat(kTasksPrefix, id), t.SerializeAsString()});
    }
    for (const auto& [id, w] : workers_) {
      batch.push_back({absl::StrCat(kWorkersPrefix, id),
                       w.has_value()
                           ? std::optional<std::string>(w->SerializeAsString())
                           : std::nullopt});
    }
    for (const JobEvent& e : events_) {
      batch.push_back(
          {EventKey(e.job_id(), e.sequence()), e.SerializeAsString()});
    }
    for (const auto& [key, value] : meta_) batch.push_back({key, value});
    if (!batch.empty()) LFT_RETURN_IF_ERROR(c_->store_->Write(batch));

    for (auto& [id, r] : jobs_) c_->jobs_[id] = std::move(r);
    for (const std::string& id : new_tasks_) {
      c_->job_tasks_[tasks_.at(id).task().job_id()].push_back(id);
    }
    for (auto& [id, t] : tasks_) {
      const TaskState before = c_->StateInMemory(id);
      TaskRecord& stored = c_->tasks_[id] = std::move(t);
      c_->IndexTask(before, stored);
    }
    for (auto& [id, w] : workers_) {
      if (w.has_value()) {
        c_->workers_[id] = *std::move(w);
      } else {
        c_->workers_.erase(id);
      }
    }
    for (JobEvent& e : events_) {
      c_->events_[e.job_id()].push_back(std::move(e));
    }
    c_->next_task_sequence_ = next_task_sequence_;
    for (const auto& fn : after_commit_) fn();
    for (const auto& [message, job] : logs_) {
      if (job.empty()) {
        LogInfo(message);
      } else {
        LogInfo(message, {{"job", job}});
      }
    }
    c_->changed_.SignalAll();
    return absl::OkStatus();
  }

 private:
  Coordinator* const c_;
  uint64_t next_task_sequence_;
  std::map<std::string, JobRecord> jobs_;
  std::map<std::string, TaskRecord> tasks_;
  std::vector<std::string> new_tasks_;
  std::map<std::string, std::optional<WorkerRecord>> workers_;
  std::vector<std::pair<std::string, std::string>> meta_;
  std::vector<JobEvent> events_;
  std::vector<std::pair<std::string, std::string>> logs_;
  std::vector<std::function<void()>> after_commit_;
};

TaskState Coordinator::StateInMemory(const std::string& task_id) const {
  auto it = tasks_.find(task_id);
  return it == tasks_.end() ? lft::v1::TASK_STATE_UNSPECIFIED
                            : it->second.state();
}

void Coordinator::CountTransition(TaskState before, TaskState after,
                                  TaskCounts* counts) {
  if (before == lft::v1::TASK_STATE_UNSPECIFIED) {
    ++counts->total;
    ++counts->unfinished;
  }
  if (before != lft::v1::TASK_STATE_SUCCEEDED &&
      after == lft::v1::TASK_STATE_SUCCEEDED) {
    --counts->unfinished;
  }
}

void Coordinator::IndexTask(TaskState before, const TaskRecord& t) {
  const std::string& job_id = t.task().job_id();
  const QueueKey key{{jobs_[job_id].sequence(), t.sequence()},
                     t.task().task_id()};
  const WorkerRole role = RoleOf(t.task());
  if (before == lft::v1::TASK_STATE_QUEUED) queued_[role].erase(key);
  if (t.state() == lft::v1::TASK_STATE_QUEUED) queued_[role].insert(key);
  CountTransition(before, t.state(),
                  &counts_[job_id][static_cast<int>(t.task().payload_case())]);
}

void Coordinator::AppendEvent(Transition* tx, JobRecord* job,
                              const std::string& message, bool with_progress) {
  JobEvent e;
  e.set_job_id(job->job().id());
  e.set_sequence(job->last_event_sequence() + 1);
  e.set_unix_ms(clock_->NowUnixMs());
  e.set_state(job->job().state());
  e.set_message(message);
  if (with_progress) {
    for (const auto& p : job->job().progress()) {
      if (p.phase() == job->job().state()) *e.mutable_progress() = p;
    }
  }
  job->set_last_event_sequence(e.sequence());
  job->mutable_job()->set_updated_unix_ms(e.unix_ms());
  if (!message.empty()) tx->Log(message, e.job_id());
  tx->AddEvent(std::move(e));
}

void Coordinator::SetJobState(Transition* tx, JobRecord* job, JobState state,
                              const std::string& message) {
  job->mutable_job()->set_state(state);
  const int64_t now = clock_->NowUnixMs();
  if (state == lft::v1::JOB_STATE_EXTRACTING)
    job->set_extracting_started_unix_ms(now);
  if (state == lft::v1::JOB_STATE_TRAINING &&
      job->training_started_unix_ms() == 0) {
    job->set_training_started_unix_ms(now);
  }
  if (state == lft::v1::JOB_STATE_EVALUATING)
    job->set_evaluating_started_unix_ms(now);
  FillProgress(*tx, *job, job->mutable_job());
  if (IsTerminal(state)) {
    job->set_ended_unix_ms(now);
    // A finished job has no rate and nothing left to wait for.
    for (auto& p : *job->mutable_job()->mutable_progress()) {
      p.clear_units_per_second();
      p.clear_eta_seconds();
    }
    const std::string id = job->job().id();
    tx->AfterCommit([this, id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      rates_.erase(rates_.lower_bound(id + "/"),
                   rates_.lower_bound(id + "0"));  // '0' follows '/'
    });
  }
  AppendEvent(tx, job, message, /*with_progress=*/true);
}

void Coordinator::CloseOpenTasks(Transition* tx, const std::string& job_id) {
  for (const std::string& id : tx->TaskIds(job_id)) {
    if (!TaskOpen(tx->PeekTask(id))) continue;
    tx->Task(id)->set_state(lft::v1::TASK_STATE_CANCELLED);
  }
  tx->AfterCommit([this, job_id]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    rendezvous_.erase(job_id);
  });
}

void Coordinator::FailJob(Transition* tx, JobRecord* job,
                          const std::string& error) {
  job->mutable_job()->set_error(error);
  CloseOpenTasks(tx, job->job().id());
  SetJobState(tx, job, lft::v1::JOB_STATE_FAILED,
              absl::StrCat("job failed: ", error));
}

void Coordinator::CreateTrainingTasks(Transition* tx, JobRecord* job) {
  const uint32_t ranks = job->job().spec().training().trainer_ranks();
  job->set_training_generation(1);
  // Streaming trainers know the stream is complete once every shard is
  // sealed in the store.
  uint32_t shards = 0;
  for (const std::string& id : tx->TaskIds(job->job().id())) {
    if (tx->PeekTask(id).task().has_extraction()) ++shards;
  }
  for (uint32_t r = 0; r < ranks; ++r) {
    TaskRecord* t = tx->NewTask(job, absl::StrCat(job->job().id(), "-t", r),
                                options_.store_address);
    auto* tr = t->mutable_task()->mutable_training();
    tr->set_generation(1);
    tr->set_world_size(ranks);
    tr->set_rank(r);
    tr->set_extraction_shards(shards);
    t->set_state(lft::v1::TASK_STATE_QUEUED);
  }
}

// ---- JobService ----

absl::StatusOr<Job> Coordinator::Submit(
    const lft::v1::SubmitJobRequest& request) {
  lft::v1::JobSpec spec = request.spec();
  ApplyJobSpecDefaults(&spec);
  std::vector<SpecProblem> problems;
  std::optional<TeacherShape> shape;
  if (options_.check_inputs_at_submit &&
      spec.kind() == lft::v1::JOB_KIND_COMPRESS) {
    // The file checks run on a copy: problems keep the user's list indexes,
    // the stored spec gets the expanded globs. Off the lock: they read files.
    lft::v1::JobSpec checked = spec;
    JobInputs inputs = CheckJobInputs(&checked);
    if (inputs.teacher.has_value()) {
      shape = TeacherShape{
          static_cast<int>(inputs.teacher->num_hidden_layers),
          static_cast<int>(inputs.teacher->max_position_embeddings)};
    }
    problems = ValidateJobSpec(spec, shape);
    problems.insert(problems.end(), inputs.problems.begin(),
                    inputs.problems.end());
    spec = std::move(checked);
  } else {
    LFT_ASSIGN_OR_RETURN(shape, ReadTeacherShape(spec.teacher().path()));
    problems = ValidateJobSpec(spec, shape);
  }
  if (spec.training().streaming() &&
      absl::StrContains(options_.store_address, ',')) {
    // Seals and range scans (the stream's fixed order) exist per store.
    problems.push_back(
        {"training.streaming",
         absl::StrCat("streaming reads need a single latent store; this "
                      "coordinator spreads jobs over several (--store-address ",
                      options_.store_address,
                      "): turn streaming off (cached mode works over "
                      "several stores) or run a coordinator with one store")});
  }
  LFT_RETURN_IF_ERROR(SpecProblemsToStatus(problems));
  if (spec.kind() != lft::v1::JOB_KIND_COMPRESS) {
    return absl::UnimplementedError(
        absl::StrCat("kind: ", lft::v1::JobKind_Name(spec.kind()),
                     " jobs are not scheduled by this coordinator yet; submit "
                     "a compress job"));
  }
  absl::MutexLock lock(&mu_);
  if (!request.request_id().empty()) {
    auto it = request_ids_.find(request.request_id());
    if (it != request_ids_.end()) return jobs_[it->second].job();
  }
  const uint64_t number = next_job_number_;
  const std::string id = absl::StrCat("j-", number);
  JobRecord r;
  Job* job = r.mutable_job();
  job->set_id(id);
  *job->mutable_spec() = spec;
  job->set_state(lft::v1::JOB_STATE_PENDING);
  job->set_created_unix_ms(clock_->NowUnixMs());
  job->set_updated_unix_ms(job->created_unix_ms());
  r.set_request_id(request.request_id());
  r.set_sequence(number + 1);
  Transition tx(this);
  JobRecord* staged = tx.AddJob(std::move(r));
  tx.PutMeta(kMetaNextJob, absl::StrCat(number + 1));
  AppendEvent(&tx, staged,
              absl::StrCat("job ", id, " (", spec.name(), ") submitted"),
              false);
  const Job submitted = staged->job();
  tx.AfterCommit([this, number, id, request_id = request.request_id()]()
                     ABSL_NO_THREAD_SAFETY_ANALYSIS {
                       next_job_number_ = number + 1;
                       if (!request_id.empty()) request_ids_[request_id] = id;
                     });
  LFT_RETURN_IF_ERROR(tx.Commit());
  return submitted;
}

absl::StatusOr<Job> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job has id \"", job_id,
                                            "\" (lftctl list shows the jobs)"));
  }
  return JobWithProgress(it->second);
}

Job Coordinator::JobWithProgress(const JobRecord& record) {
  Job job = record.job();
  if (!IsTerminal(job.state())) {
    Transition view(this);  // read-only: never committed
    FillProgress(view, record, &job);
  }
  return job;
}

absl::StatusOr<lft::v1::ListJobsResponse> Coordinator::ListJobs(
    const lft::v1::ListJobsRequest& request) {
  uint64_t offset = 0;
  if (!request.page_token().empty() &&
      !absl::SimpleAtoi(request.page_token(), &offset)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "page_token \"", request.page_token(),
        "\" was not returned by List; pass next_page_token unchanged"));
  }
  const uint32_t page_size =
      request.page_size() == 0 ? 100 : request.page_size();
  absl::MutexLock lock(&mu_);
  std::vector<const JobRecord*> all;
  for (const auto& [id, r] : jobs_) {
    bool keep = request.states().empty();
    for (int s : request.states()) keep = keep || s == r.job().state();
    if (keep) all.push_back(&r);
  }
  std::sort(all.begin(), all.end(), [](const JobRecord* a, const JobRecord* b) {
    return a->sequence() > b->sequence();
  });
  lft::v1::ListJobsResponse resp;
  for (uint64_t i = offset;
       i < all.size() && resp.jobs_size() < static_cast<int>(page_size); ++i) {
    *resp.add_jobs() = JobWithProgress(*all[i]);
  }
  if (offset + resp.jobs_size() < all.size()) {
    resp.set_next_page_token(absl::StrCat(offset + resp.jobs_size()));
  }
  return resp;
}

absl::StatusOr<Job> Coordinator::Cancel(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job has id \"", job_id,
                                            "\" (lftctl list shows the jobs)"));
  }
  if (IsTerminal(it->second.job().state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "job ", job_id, " already finished (",
        ShortJobState(it->second.job().state()), "); nothing to cancel"));
  }
  Transition tx(this);
  JobRecord* job = tx.Job(job_id);
  CloseOpenTasks(&tx, job_id);
  SetJobState(&tx, job, lft::v1::JOB_STATE_CANCELLED,
              absl::StrCat("job ", job_id, " cancelled"));
  const Job cancelled = job->job();
  LFT_RETURN_IF_ERROR(tx.Commit());
  return cancelled;
}

absl::StatusOr<Job> Coordinator::Delete(const std::string& job_id, bool force) {
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job_id);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "no job has id \"", job_id, "\" (lftctl list shows the jobs)"));
    }
    if (options_.latent_store == nullptr) {
      return absl::FailedPreconditionError(
          "this coordinator runs without a latent store (--store-address); "
          "delete the job's data in the store it used");
    }
    if (!IsTerminal(it->second.job().state())) {
      if (!force) {
        return absl::FailedPreconditionError(
            absl::StrCat("job ", job_id, " is still running (",
                         ShortJobState(it->second.job().state()),
                         "); cancel it first or delete with --force"));
      }
      Transition tx(this);
      JobRecord* job = tx.Job(job_id);
      CloseOpenTasks(&tx, job_id);
      SetJobState(&tx, job, lft::v1::JOB_STATE_CANCELLED,
                  absl::StrCat("job ", job_id, " cancelled to delete it"));
      LFT_RETURN_IF_ERROR(tx.Commit());
    }
  }
  // The store call runs without the lock: it compacts, which takes a while.
  absl::Status deleted = options_.latent_store->DeleteJob(job_id);
  if (!deleted.ok() && !absl::IsNotFound(deleted)) {
    return Annotate(deleted, absl::StrCat("deleting job ", job_id,
                                          "'s data from the latent store"));
  }
  absl::MutexLock lock(&mu_);
  Transition tx(this);
  JobRecord* job = tx.Job(job_id);
  const int64_t now = clock_->NowUnixMs();
  if (job->job().data_deleted_unix_ms() == 0) {
    job->mutable_job()->set_data_deleted_unix_ms(now);
    if (job->job().pairs_deleted_unix_ms() == 0) {
      job->mutable_job()->set_pairs_deleted_unix_ms(now);
    }
    AppendEvent(&tx, job,
                absl::StrCat("job ", job_id,
                             "'s pairs, checkpoints and reports deleted"),
                false);
  }
  const Job out = job->job();
  LFT_RETURN_IF_ERROR(tx.Commit());
  return out;
}

absl::StatusOr<std::vector<JobEvent>> Coordinator::WaitForEvents(
    const std::string& job_id, uint64_t after_sequence, absl::Duration timeout,
    bool* finished) {
  *finished = false;
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job has id \"", job_id,
                                            "\" (lftctl list shows the jobs)"));
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (!shutting_down_ &&
         it->second.last_event_sequence() <= after_sequence &&
         !IsTerminal(it->second.job().state())) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) break;
  }
  if (shutting_down_)
    return absl::UnavailableError("the coordinator is shutting down");
  std::vector<JobEvent> out;
  for (const JobEvent& e : events_[job_id]) {
    if (e.sequence() > after_sequence) out.push_back(e);
  }
  *finished = IsTerminal(it->second.job().state());
  return out;
}

// ---- WorkerService ----

absl::StatusOr<WorkerRecord*> Coordinator::FindWorker(
    const std::string& worker_id) {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "worker \"", worker_id,
        "\" is not registered (the coordinator restarted or forgot it after ",
        options_.lease_duration_ms, " ms without heartbeats); register again"));
  }
  it->second.set_last_seen_unix_ms(clock_->NowUnixMs());
  return &it->second;
}

absl::StatusOr<lft::v1::RegisterResponse> Coordinator::Register(
    const lft::v1::RegisterRequest& request) {
  if (request.info().role() == lft::v1::WORKER_ROLE_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "info.role: set teacher, trainer or evaluator (lft-worker --role)");
  }
  absl::MutexLock lock(&mu_);
  std::string id;
  for (const auto& [wid, w] : workers_) {
    if (w.info().hostname() == request.info().hostname() &&
        w.info().role() == request.info().role() &&
        w.info().device() == request.info().device()) {
      id = wid;
    }
  }
  const int64_t now = clock_->NowUnixMs();
  uint64_t next_worker = next_worker_number_;
  if (id.empty()) id = absl::StrCat("w-", next_worker++);
  WorkerRecord w;
  w.set_worker_id(id);
  *w.mutable_info() = request.info();
  w.set_registered_unix_ms(now);
  w.set_last_seen_unix_ms(now);
  Transition tx(this);
  tx.PutWorker(w);
  tx.PutMeta(kMetaNextWorker, absl::StrCat(next_worker));
  tx.AfterCommit([this, next_worker]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    next_worker_number_ = next_worker;
  });
  LFT_RETURN_IF_ERROR(tx.Commit());
  LogInfo("worker registered",
          {{"worker", id},
           {"host", request.info().hostname()},
           {"role", lft::v1::WorkerRole_Name(request.info().role())}});
  lft::v1::RegisterResponse resp;
  resp.set_worker_id(id);
  resp.set_heartbeat_interval_ms(
      static_cast<uint32_t>(options_.heartbeat_interval_ms));
  return resp;
}

absl::StatusOr<lft::v1::HeartbeatResponse> Coordinator::Heartbeat(
    const lft::v1::HeartbeatRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_RETURN_IF_ERROR(FindWorker(request.worker_id()).status());
  const int64_t expiry = clock_->NowUnixMs() + options_.lease_duration_ms;
  lft::v1::HeartbeatResponse resp;
  resp.set_lease_expiry_unix_ms(expiry);
  for (const std::string& id : request.task_ids()) {
    auto it = tasks_.find(id);
    if (it == tasks_.end() ||
        it->second.state() != lft::v1::TASK_STATE_LEASED ||
        it->second.worker_id() != request.worker_id()) {
      resp.add_revoked_task_ids(id);
      continue;
    }
    // Soft state (see the class comment): not written.
    it->second.mutable_task()->set_lease_expiry_unix_ms(expiry);
  }
  return resp;
}

absl::StatusOr<const TaskRecord*> Coordinator::FindTaskOf(
    const std::string& worker_id, const std::string& task_id) {
  LFT_RETURN_IF_ERROR(FindWorker(worker_id).status());
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no task has id \"", task_id, "\""));
  }
  if (it->second.state() != lft::v1::TASK_STATE_LEASED ||
      it->second.worker_id() != worker_id) {
    return nullptr;
  }
  return &it->second;
}

const TaskRecord* Coordinator::FindQueuedTask(WorkerRole role) {
  auto it = queued_.find(role);
  if (it == queued_.end() || it->second.empty()) return nullptr;
  return &tasks_[it->second.begin()->second];
}

absl::StatusOr<lft::v1::AcquireTaskResponse> Coordinator::AcquireTask(
    const lft::v1::AcquireTaskRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(WorkerRecord * worker, FindWorker(request.worker_id()));
  const WorkerRole role = worker->info().role();
  const absl::Time deadline =
      absl::Now() + absl::Milliseconds(std::min<int64_t>(request.wait_ms(),
                                                         options_.max_wait_ms));
  lft::v1::AcquireTaskResponse resp;
  while (true) {
    if (shutting_down_)
      return absl::UnavailableError("the coordinator is shutting down");
    // The worker may have been forgotten while we waited.
    if (workers_.count(request.worker_id()) == 0) {
      return FindWorker(request.worker_id()).status();
    }
    const TaskRecord* queued = FindQueuedTask(role);
    if (queued != nullptr) {
      Transition tx(this);
      TaskRecord* t = tx.Task(queued->task().task_id());
      t->set_state(lft::v1::TASK_STATE_LEASED);
      t->set_worker_id(request.worker_id());
      t->mutable_task()->set_lease_expiry_unix_ms(clock_->NowUnixMs() +
                                                  options_.lease_duration_ms);
      *resp.mutable_task() = t->task();
      const std::string task_id = t->task().task_id();
      const uint32_t attempt = t->attempts() + 1;
      LFT_RETURN_IF_ERROR(tx.Commit());
      LogInfo("task leased", {{"task", task_id},
                              {"worker", request.worker_id()},
                              {"attempt", attempt}});
      return resp;
    }
    if (changed_.WaitWithDeadline(&mu_, deadline)) return resp;
  }
}

absl::StatusOr<lft::v1::ReportProgressResponse> Coordinator::ReportProgress(
    const lft::v1::ReportProgressRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(const TaskRecord* held,
                       FindTaskOf(request.worker_id(), request.task_id()));
  lft::v1::ReportProgressResponse resp;
  if (held == nullptr) {
    resp.set_keep_going(false);
    return resp;
  }
  resp.set_keep_going(true);
  Transition tx(this);
  TaskRecord* t = tx.Task(request.task_id());
  t->set_tokens_done(request.tokens_done());
  t->set_steps_done(request.steps_done());
  t->set_documents_done(request.documents_done());
  t->set_sequences_done(request.sequences_done());
  t->set_loss(request.loss());
  t->set_stage(request.stage());
  t->set_stage_units_done(request.stage_units_done());
  t->set_stage_units_total(request.stage_units_total());
  t->set_stage_unit(request.stage_unit());
  if (!request.checkpoint().empty()) t->set_checkpoint(request.checkpoint());
  JobRecord* job = tx.Job(t->task().job_id());
  if (t->task().has_training() && t->task().training().rank() == 0) {
    if (!request.checkpoint().empty()) {
      job->set_latest_checkpoint(request.checkpoint());
    }
    job->mutable_job()->set_latest_loss(request.loss());
    job->mutable_job()->set_latest_step(request.steps_done());
  }
  MaybeProgressEvent(&tx, job);
  LFT_RETURN_IF_ERROR(tx.Commit());
  return resp;
}

absl::StatusOr<lft::v1::CompleteTaskResponse> Coordinator::CompleteTask(
    const lft::v1::CompleteTaskRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(const TaskRecord* held,
                       FindTaskOf(request.worker_id(), request.task_id()));
  if (held == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", request.task_id(), " is no longer leased to worker ",
        request.worker_id(),
        " (lease expired, job ended or group re-formed); its output will be "
        "overwritten by the re-run"));
  }
  Transition tx(this);
  TaskRecord* t = tx.Task(request.task_id());
  JobRecord* job = tx.Job(t->task().job_id());
  if (!request.error().empty()) {
    t->set_attempts(t->attempts() + 1);
    t->set_error(request.error());
    if (t->attempts() >= options_.max_task_attempts) {
      t->set_state(lft::v1::TASK_STATE_FAILED);
      FailJob(&tx, job,
              absl::StrCat(Describe(*t), " failed ", t->attempts(),
                           " times; last error: ", request.error()));
    } else {
      t->set_state(lft::v1::TASK_STATE_QUEUED);
      AppendEvent(&tx, job,
                  absl::StrCat(Describe(*t), " failed on worker ",
                               request.worker_id(), ": ", request.error(),
                               "; retrying (attempt ", t->attempts() + 1,
                               " of ", options_.max_task_attempts, ")"),
                  false);
      if (t->task().has_training())
        ReformTrainerGroup(&tx, job, "a trainer rank failed");
    }
    LFT_RETURN_IF_ERROR(tx.Commit());
    return lft::v1::CompleteTaskResponse();
  }
  t->set_state(lft::v1::TASK_STATE_SUCCEEDED);
  t->set_pairs_written(request.pairs_written());
  if (!request.checkpoint().empty()) t->set_checkpoint(request.checkpoint());
  if (t->task().has_extraction()) {
    const auto& e = t->task().extraction();
    if (e.end_document() > e.first_document()) {
      t->set_documents_done(e.end_document() - e.first_document());
    }
  }
  if (t->task().has_training() && t->task().training().rank() == 0 &&
      !request.checkpoint().empty()) {
    job->set_latest_checkpoint(request.checkpoint());
  }
  AdvanceJob(&tx, job);
  LFT_RETURN_IF_ERROR(tx.Commit());
  return lft::v1::CompleteTaskResponse();
}

absl::StatusOr<lft::v1::RendezvousResponse> Coordinator::Rendezvous(
    const lft::v1::RendezvousRequest& request, absl::Duration max_wait) {
  absl::MutexLock lock(&mu_);
  LFT_RETURN_IF_ERROR(FindWorker(request.worker_id()).status());
  auto it = tasks_.find(request.task_id());
  if (it == tasks_.end() || !it->second.task().has_training()) {
    return absl::NotFoundError(
        absl::StrCat("no training task has id \"", request.task_id(), "\""));
  }
  const std::string job_id = it->second.task().job_id();
  const uint32_t rank = it->second.task().training().rank();
  const uint32_t world = it->second.task().training().world_size();
  auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) -> absl::Status {
    if (shutting_down_)
      return absl::UnavailableError("the coordinator is shutting down");
    const TaskRecord& t = tasks_[request.task_id()];
    const JobRecord& job = jobs_[job_id];
    if (IsTerminal(job.job().state())) {
      return absl::AbortedError(absl::StrCat(
          "job ", job_id, " ended (", ShortJobState(job.job().state()), ")"));
    }
    if (job.training_generation() != request.generation()) {
      return absl::AbortedError(absl::StrCat(
          "trainer generation ", request.generation(), " of job ", job_id,
          " was dissolved (now ", job.training_generation(),
          "); abandon its collectives and acquire a task again"));
    }
    if (t.state() != lft::v1::TASK_STATE_LEASED ||
        t.worker_id() != request.worker_id()) {
      return absl::FailedPreconditionError(
          absl::StrCat("task ", request.task_id(), " is not leased to worker ",
                       request.worker_id()));
    }
    return absl::OkStatus();
  };
  LFT_RETURN_IF_ERROR(check());
  if (rank == 0 && request.communicator_id().empty()) {
    return absl::InvalidArgumentError(
        "communicator_id: rank 0 must publish the communicator id (NCCL unique "
        "id or "
        "Gloo store address)");
  }
  RendezvousState& rv = rendezvous_[job_id];
  if (rv.generation != request.generation()) {
    rv = RendezvousState();
    rv.generation = request.generation();
  }
  rv.joined[rank] = request.worker_id();
  if (rank == 0) rv.communicator_id = request.communicator_id();
  changed_.SignalAll();
  const absl::Time deadline =
      absl::Now() +
      std::min(max_wait, absl::Milliseconds(options_.max_wait_ms));
  while (true) {
    LFT_RETURN_IF_ERROR(check());
    RendezvousState& cur = rendezvous_[job_id];
    if (cur.joined.size() >= world && !cur.communicator_id.empty()) {
      if (jobs_[job_id].formed_generation() != request.generation()) {
        Transition tx(this);
        JobRecord* job = tx.Job(job_id);
        job->set_formed_generation(request.generation());
        job->mutable_job()->clear_waiting_reason();
        // Recovery: from the moment the previous generation was dissolved
        // (a rank lost) to the moment its successor has every rank.
        auto dissolved = dissolved_unix_ms_.find(job_id);
        double recovery_s = -1;
        if (dissolved != dissolved_unix_ms_.end()) {
          recovery_s =
              static_cast<double>(clock_->NowUnixMs() - dissolved->second) /
              1000.0;
        }
        AppendEvent(
            &tx, job,
            absl::StrCat(
                "trainer group generation ", request.generation(),
                " formed with ", world, " rank(s)",
                recovery_s >= 0
                    ? absl::StrFormat(", %.1f s after generation %d was "
                                      "dissolved",
                                      recovery_s, request.generation() - 1)
                    : ""),
            false);
        LFT_RETURN_IF_ERROR(tx.Commit());
        group_waits_.erase(job_id);
        if (recovery_s >= 0) {
          dissolved_unix_ms_.erase(job_id);
          if (metrics_ != nullptr) {
            metrics_
                ->Histogram("lft_coordinator_trainer_recovery_seconds",
                            "Seconds from a trainer group's dissolution (a "
                            "rank lost) until its next generation formed",
                            {1, 2, 5, 10, 20, 30, 60, 120, 300, 600})
                .Observe(recovery_s);
          }
        }
      }
      lft::v1::RendezvousResponse resp;
      resp.set_rank(rank);
      resp.set_world_size(world);
      resp.set_generation(request.generation());
      resp.set_communicator_id(cur.communicator_id);
      // The coordinator decides where the generation resumes: the job's
      // latest checkpoint (rank 0 reports each one as it is stored).
      resp.set_resume_checkpoint(jobs_[job_id].latest_checkpoint());
      return resp;
    }
    if (changed_.WaitWithDeadline(&mu_, deadline)) {
      LFT_RETURN_IF_ERROR(check());
      return absl::DeadlineExceededError(absl::StrCat(
          "waiting for ", world - rendezvous_[job_id].joined.size(), " of ",
          world, " trainer ranks to join generation ", request.generation(),
          " of job ", job_id, "; call Rendezvous again"));
    }
  }
}

// ---- Scheduling ----

void Coordinator::AdvanceJob(Transition* tx, JobRecord* job) {
  if (IsTerminal(job->job().state())) return;
  const std::string& id = job->job().id();
  const TaskCounts extraction = tx->Counts(id, lft::v1::Task::kExtraction);
  const TaskCounts training = tx->Counts(id, lft::v1::Task::kTraining);
  const TaskCounts evaluation = tx->Counts(id, lft::v1::Task::kEvaluation);
  const JobState state = job->job().state();
  if (state == lft::v1::JOB_STATE_EXTRACTING && extraction.unfinished == 0) {
    const lft::v1::TrainingSpec& ts = job->job().spec().training();
    if (ts.streaming()) {
      // Streaming trainers would wait forever for a first global batch.
      uint64_t pairs = 0;
      for (const std::string& task_id : tx->TaskIds(id)) {
        const TaskRecord& t = tx->PeekTask(task_id);
        if (t.task().has_extraction()) pairs += t.pairs_written();
      }
      if (pairs < ts.global_batch_sequences()) {
        return FailJob(
            tx, job,
            absl::StrCat("extraction produced ", pairs, " pair(s) of ",
                         job->job().spec().sequence_length(),
                         " tokens, fewer than one global batch of ",
                         ts.global_batch_sequences(),
                         " sequences, so training could never take a step; add "
                         "documents to the corpus or lower "
                         "training.global_batch_sequences or sequence_length"));
      }
    }
    if (training.total == 0) CreateTrainingTasks(tx, job);
    SetJobState(
        tx, job, lft::v1::JOB_STATE_TRAINING,
        absl::StrCat("extraction done; training with ",
                     job->job().spec().training().trainer_ranks(), " rank(s)"));
    return AdvanceJob(tx, job);
  }
  if (state == lft::v1::JOB_STATE_TRAINING && training.total > 0 &&
      training.unfinished == 0) {
    if (evaluation.total == 0) {
      const std::string rank0_id = absl::StrCat(id, "-t0");
      std::string checkpoint = job->latest_checkpoint();
      for (const std::string& task_id : tx->TaskIds(id)) {
        if (task_id != rank0_id) continue;
        const TaskRecord& rank0 = tx->PeekTask(task_id);
        if (!rank0.checkpoint().empty()) checkpoint = rank0.checkpoint();
      }
      TaskRecord* t =
          tx->NewTask(job, absl::StrCat(id, "-e"), options_.store_address);
      t->mutable_task()->mutable_evaluation()->set_checkpoint(checkpoint);
      t->set_state(lft::v1::TASK_STATE_QUEUED);
    }
    SetJobState(tx, job, lft::v1::JOB_STATE_EVALUATING,
                "training done; evaluating");
    return;
  }
  if (state == lft::v1::JOB_STATE_EVALUATING && evaluation.total > 0 &&
      evaluation.unfinished == 0) {
    SetJobState(tx, job, lft::v1::JOB_STATE_SUCCEEDED,
                absl::StrCat("job ", id, " succeeded"));
  }
}

void Coordinator::RequeueTask(Transition* tx, TaskRecord* task,
                              const std::string& reason) {
  JobRecord* job = tx->Job(task->task().job_id());
  task->set_attempts(task->attempts() + 1);
  task->set_error(reason);
  if (task->attempts() >= options_.max_task_attempts) {
    task->set_state(lft::v1::TASK_STATE_FAILED);
    FailJob(tx, job,
            absl::StrCat(Describe(*task), " was lost ", task->attempts(),
                         " times; last: ", reason));
    return;
  }
  task->set_state(lft::v1::TASK_STATE_QUEUED);
  task->set_tokens_done(0);
  task->set_documents_done(0);
  task->set_sequences_done(0);
  AppendEvent(tx, job,
              absl::StrCat(reason, "; ", Describe(*task), " requeued (attempt ",
                           task->attempts() + 1, " of ",
                           options_.max_task_attempts, ")"),
              false);
  if (task->task().has_training()) ReformTrainerGroup(tx, job, reason);
}

void Coordinator::ReformTrainerGroup(Transition* tx, JobRecord* job,
                                     const std::string& reason) {
  const uint64_t generation = job->training_generation() + 1;
  job->set_training_generation(generation);
  for (const std::string& id : tx->TaskIds(job->job().id())) {
    const TaskRecord& peek = tx->PeekTask(id);
    if (!peek.task().has_training() || !TaskOpen(peek)) continue;
    // Holders of the old generation see the task revoked at their next
    // heartbeat and get Aborted from Rendezvous.
    TaskRecord* t = tx->Task(id);
    t->set_state(lft::v1::TASK_STATE_QUEUED);
    auto* tr = t->mutable_task()->mutable_training();
    tr->set_generation(generation);
    tr->set_resume_checkpoint(job->latest_checkpoint());
  }
  tx->AfterCommit([this, job_id = job->job().id(), now = clock_->NowUnixMs()]()
                      ABSL_NO_THREAD_SAFETY_ANALYSIS {
                        rendezvous_.erase(job_id);
                        // The first dissolution counts: a group lost again
                        // before it re-formed is still recovering from it.
                        dissolved_unix_ms_.emplace(job_id, now);
                      });
  AppendEvent(tx, job,
              absl::StrCat("trainer group re-formed as generation ", generation,
                           " (", reason, ")",
                           job->latest_checkpoint().empty()
                               ? ""
                               : absl::StrCat("; resuming from ",
                                              job->latest_checkpoint())),
              false);
}

double Coordinator::RecentRate(const std::string& series, int64_t now,
                               uint64_t done) {
  std::deque<std::pair<int64_t, uint64_t>>& w = rates_[series];
  // A requeued task starts its count again: so does the window.
  if (!w.empty() && done < w.back().second) w.clear();
  if (w.empty() || done != w.back().second || now - w.back().first >= 1000) {
    w.emplace_back(now, done);
  }
  // The window starts at the first progress (a phase's start-up, before any
  // unit is done, is not its rate) and reaches back about a minute.
  while (w.size() > 2 &&
         (now - w.front().first > kRateWindowMs || w.front().second == 0)) {
    w.pop_front();
  }
  if (w.size() < 2) return 0;
  const double seconds = (w.back().first - w.front().first) / 1000.0;
  if (seconds < 1.0 || w.back().second <= w.front().second) return 0;
  return (w.back().second - w.front().second) / seconds;
}

void Coordinator::FillProgress(const Transition& tx, const JobRecord& job,
                               Job* out) {
  const int64_t now = clock_->NowUnixMs();
  uint64_t tokens = 0, docs = 0, steps = 0, train_tokens = 0, sequences = 0;
  bool any_eval = false, any_train = false;
  const TaskRecord* eval = nullptr;
  for (const std::string& id : tx.TaskIds(job.job().id())) {
    const TaskRecord& t = tx.PeekTask(id);
    if (t.task().has_extraction()) {
      tokens += t.tokens_done();
      docs += t.documents_done();
    } else if (t.task().has_training()) {
      any_train = true;
      if (t.task().training().rank() == 0) {
        steps = t.steps_done();
        train_tokens = t.tokens_done();
      }
    } else if (t.task().has_evaluation()) {
      any_eval = true;
      sequences = t.sequences_done();
      eval = &t;
    }
  }
  out->clear_progress();
  const lft::v1::JobSpec& spec = job.job().spec();
  const std::string& id = job.job().id();
  if (job.planned()) {
    uint64_t total = 0;
    if (docs > 0 && job.documents_total() > 0) {
      total = static_cast<uint64_t>(static_cast<double>(tokens) *
                                    job.documents_total() / docs);
    }
    *out->add_progress() =
        MakeProgress(lft::v1::JOB_STATE_EXTRACTING, "tokens", tokens, total,
                     RecentRate(id + "/extracting", now, tokens));
  }
  if (any_train) {
    const bool by_steps = spec.training().max_steps() > 0;
    const uint64_t done = by_steps ? steps : train_tokens;
    *out->add_progress() = MakeProgress(
        lft::v1::JOB_STATE_TRAINING, by_steps ? "steps" : "tokens", done,
        by_steps ? spec.training().max_steps() : spec.training().max_tokens(),
        RecentRate(id + "/training", now, done));
  }
  if (any_eval) {
    if (eval != nullptr && !eval->stage().empty()) {
      // The evaluator's current stage (regression baseline, scoring) with
      // its own units, so the phase never sits at 0 while a stage runs.
      lft::v1::PhaseProgress p = MakeProgress(
          lft::v1::JOB_STATE_EVALUATING, eval->stage_unit(),
          eval->stage_units_done(), eval->stage_units_total(),
          RecentRate(absl::StrCat(id, "/evaluating/", eval->stage()), now,
                     eval->stage_units_done()));
      p.set_stage(eval->stage());
      *out->add_progress() = std::move(p);
    } else {
      *out->add_progress() =
          MakeProgress(lft::v1::JOB_STATE_EVALUATING, "sequences", sequences,
                       spec.evaluation().max_sequences(),
                       RecentRate(id + "/evaluating", now, sequences));
    }
  }
}

void Coordinator::MaybeProgressEvent(Transition* tx, JobRecord* job) {
  const int64_t now = clock_->NowUnixMs();
  if (now - job->last_progress_event_unix_ms() <
      options_.progress_event_interval_ms) {
    return;
  }
  job->set_last_progress_event_unix_ms(now);
  FillProgress(*tx, *job, job->mutable_job());
  AppendEvent(tx, job, "", /*with_progress=*/true);
}

void Coordinator::RegisterPendingJobsWithStore() {
  std::vector<std::pair<std::string, lft::v1::JobSpec>> pending;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : jobs_) {
      if (r.job().state() == lft::v1::JOB_STATE_PENDING && !r.planned() &&
          store_registrations_.count(id) == 0) {
        pending.emplace_back(id, r.job().spec());
      }
    }
  }
  for (const auto& [id, spec] : pending) {
    // Reads the teacher's config.json and calls the store: without the
    // lock.
    bool created = false;
    absl::Status s = CreateStoreJob(id, spec, &created);
    if (absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s)) {
      LogWarning("latent store unreachable; planning the job at a later tick",
                 {{"job", id}, {"error", s.ToString()}});
      continue;
    }
    absl::MutexLock lock(&mu_);
    store_registrations_[id] = StoreRegistration{s, created};
  }
}

std::vector<std::shared_ptr<Coordinator::PlanningResult>>
Coordinator::StartPlanning() {
  std::vector<std::shared_ptr<PlanningResult>> started;
  const int64_t now = clock_->NowUnixMs();
  std::vector<std::pair<std::string, absl::Status>> unregistered;
  // Registrations of jobs cancelled before their planning are dropped.
  for (auto it = store_registrations_.begin();
       it != store_registrations_.end();) {
    auto job = jobs_.find(it->first);
    const bool pending =
        job != jobs_.end() &&
        job->second.job().state() == lft::v1::JOB_STATE_PENDING &&
        !job->second.planned();
    it = pending ? std::next(it) : store_registrations_.erase(it);
  }
  for (const auto& [id, r] : jobs_) {
    if (r.job().state() != lft::v1::JOB_STATE_PENDING || r.planned() ||
        planning_.count(id) > 0) {
      continue;
    }
    // Registered with the store first (RegisterPendingJobsWithStore).
    auto reg = store_registrations_.find(id);
    if (reg == store_registrations_.end()) continue;
    if (!reg->second.status.ok()) {
      unregistered.emplace_back(id, reg->second.status);
      continue;
    }
    // Sharding opens and reads the corpus, which may block for good (a FIFO,
    // a hung mount): it runs on a detached thread that owns what it touches
    // and never takes mu_, so neither the lock nor this thread waits on it.
    auto result = std::make_shared<PlanningResult>();
    planning_[id] = Planning{result, now};
    started.push_back(result);
    std::thread([result, sharding = sharding_,
                 corpus = r.job().spec().corpus()] {
      auto shards = sharding->Shard(corpus);
      absl::MutexLock lock(&result->mu);
      result->shards = std::move(shards);
      result->done = true;
    }).detach();
  }
  for (const auto& [id, status] : unregistered) ApplyPlan(id, status);
  return started;
}

void Coordinator::ApplyFinishedPlans() {
  const int64_t now = clock_->NowUnixMs();
  std::vector<std::string> ended;
  for (auto& [id, planning] : planning_) {
    auto job = jobs_.find(id);
    if (job == jobs_.end() ||
        job->second.job().state() != lft::v1::JOB_STATE_PENDING ||
        job->second.planned()) {
      ended.push_back(id);  // cancelled meanwhile: the plan is dropped
      continue;
    }
    std::optional<absl::StatusOr<std::vector<lft::v1::ExtractionTask>>> shards;
    {
      absl::MutexLock lock(&planning.result->mu);
      if (planning.result->done) shards = planning.result->shards;
    }
    if (!shards.has_value()) {
      const int64_t waited_ms = now - planning.started_unix_ms;
      if (options_.planning_deadline_ms <= 0 ||
          waited_ms < options_.planning_deadline_ms) {
        continue;
      }
      shards = absl::DeadlineExceededError(absl::StrCat(
          "planning the corpus did not finish within ",
          options_.planning_deadline_ms,
          " ms (the coordinator's --planning-deadline-ms): opening or "
          "reading one of its files blocks; is a corpus path a FIFO, a "
          "device or on a hung network mount?"));
    }
    ApplyPlan(id, *shards);
    // A failed write leaves the job PENDING and unplanned: it is planned
    // again from the start.
    ended.push_back(id);
  }
  for (const std::string& id : ended) planning_.erase(id);
}

void Coordinator::ApplyPlan(
    const std::string& id,
    const absl::StatusOr<std::vector<lft::v1::ExtractionTask>>& shards) {
  Transition tx(this);
  JobRecord* job = tx.Job(id);
  if (!shards.ok()) {
    FailJob(&tx, job, std::string(shards.status().message()));
  } else {
    uint64_t docs = 0;
    for (const auto& shard : *shards) {
      TaskRecord* t =
          tx.NewTask(job, absl::StrCat(id, "-x", shard.shard_index()),
                     options_.store_address);
      *t->mutable_task()->mutable_extraction() = shard;
      t->set_state(lft::v1::TASK_STATE_QUEUED);
      if (shard.end_document() > shard.first_document()) {
        docs += shard.end_document() - shard.first_document();
      }
    }
    job->set_planned(true);
    job->set_documents_total(docs);
    auto reg = store_registrations_.find(id);
    job->set_store_job_created(reg != store_registrations_.end() &&
                               reg->second.created);
    if (job->job().spec().training().streaming()) CreateTrainingTasks(&tx, job);
    SetJobState(&tx, job, lft::v1::JOB_STATE_EXTRACTING,
                absl::StrCat("corpus sharded into ", shards->size(),
                             " extraction task(s) over ", docs, " documents"));
  }
  absl::Status s = tx.Commit();
  if (!s.ok()) {
    // The job stays PENDING and unplanned: registered and planned again.
    LogError("planning a job failed; retrying at the next tick",
             {{"job", id}, {"error", s.ToString()}});
  }
  store_registrations_.erase(id);
}

absl::Status Coordinator::CreateStoreJob(const std::string& job_id,
                                         const lft::v1::JobSpec& spec,
                                         bool* created) {
  *created = false;
  if (options_.latent_store == nullptr) return absl::OkStatus();
  absl::StatusOr<NeoXConfig> config = ReadNeoXConfig(spec.teacher().path());
  if (!config.ok()) {
    // The teacher lives on the workers only (--skip-input-checks): the
    // first teacher registers the job, as before.
    return absl::OkStatus();
  }
  JobConfig jc;
  jc.hidden = static_cast<uint32_t>(config->hidden_size);
  switch (DefaultedDtype(spec.storage_dtype())) {
    case lft::v1::STORAGE_DTYPE_F32:
      jc.codec = TensorCodec::kF32;
      break;
    case lft::v1::STORAGE_DTYPE_F16:
      jc.codec = TensorCodec::kF16;
      break;
    case lft::v1::STORAGE_DTYPE_FP8_E4M3:
      jc.codec = TensorCodec::kFp8E4M3;
      break;
    default:
      jc.codec = TensorCodec::kBF16;
      break;
  }
  // Streaming: teachers run at most this far ahead of the trainer.
  if (spec.training().streaming()) {
    jc.max_pending_pairs = spec.training().streaming_buffer_pairs();
  }
  absl::Status s = options_.latent_store->CreateJob(job_id, jc);
  if (!s.ok()) {
    return Annotate(s, "registering the job with the latent store");
  }
  *created = true;
  return absl::OkStatus();
}

void Coordinator::ApplyPairRetention() {
  if (options_.latent_store == nullptr || options_.pair_retention_ms <= 0) {
    return;
  }
  const int64_t now = clock_->NowUnixMs();
  std::vector<std::string> due;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : jobs_) {
      if (!IsTerminal(r.job().state()) || r.job().pairs_deleted_unix_ms() > 0)
        continue;
      // Jobs that ended before ended_unix_ms existed count from their last
      // update.
      const int64_t ended =
          r.ended_unix_ms() > 0 ? r.ended_unix_ms() : r.job().updated_unix_ms();
      if (now - ended >= options_.pair_retention_ms) due.push_back(id);
    }
  }
  for (const std::string& id : due) {
    absl::Status s = options_.latent_store->DeletePairs(id);
    if (!s.ok() && !absl::IsNotFound(s)) {
      LogWarning("deleting pairs after retention failed; retrying later",
                 {{"job", id}, {"error", s.ToString()}});
      continue;
    }
    absl::MutexLock lock(&mu_);
    Transition tx(this);
    JobRecord* job = tx.Job(id);
    if (job->job().pairs_deleted_unix_ms() > 0) continue;
    job->mutable_job()->set_pairs_deleted_unix_ms(now);
    AppendEvent(&tx, job,
                absl::StrCat("pairs deleted from the latent store ",
                             options_.pair_retention_ms / 1000,
                             " s after the job ended (retention); checkpoints "
                             "and reports stay until lftctl delete"),
                false);
    absl::Status c = tx.Commit();
    if (!c.ok()) {
      LogError("recording pair retention failed",
               {{"job", id}, {"error", c.ToString()}});
    }
  }
}

void Coordinator::ExpireLeases() {
  const int64_t now = clock_->NowUnixMs();
  Transition tx(this);
  std::set<std::string> dead;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_seen_unix_ms() > options_.lease_duration_ms) {
      dead.insert(id);
      tx.DeleteWorker(id);
    }
  }
  int expired = 0;
  for (const auto& [id, memory] : tasks_) {
    const TaskRecord& t = tx.PeekTask(id);
    if (t.state() != lft::v1::TASK_STATE_LEASED) continue;
    const bool holder_gone =
        dead.count(t.worker_id()) > 0 || workers_.count(t.worker_id()) == 0;
    if (!holder_gone && t.task().lease_expiry_unix_ms() > now) continue;
    ++expired;
    RequeueTask(&tx, tx.Task(id),
                absl::StrCat("worker ", t.worker_id(),
                             " lost its lease on task ", t.task().task_id()));
  }
  if (tx.empty()) return;
  // A failed write changes nothing: the same workers and leases expire at
  // the next tick.
  absl::Status s = tx.Commit();
  if (!s.ok()) {
    LogError("expiring leases failed; retrying at the next tick",
             {{"error", s.ToString()}});
    return;
  }
  for (const std::string& id : dead) {
    LogWarning("worker forgotten after missing heartbeats", {{"worker", id}});
  }
  if (metrics_ != nullptr && expired > 0) {
    metrics_
        ->Counter("lft_coordinator_leases_expired_total",
                  "Task leases lost because their worker stopped heartbeating")
        .Increment(expired);
  }
}

void Coordinator::Tick() {
  RegisterPendingJobsWithStore();
  ApplyPairRetention();
  std::vector<std::shared_ptr<PlanningResult>> started;
  {
    absl::MutexLock lock(&mu_);
    started = StartPlanning();
  }
  // A plan that is quick (the usual case) is applied in this very round;
  // one that blocks is waited for at most kInlinePlanningWait here, outside
  // the lock, and looked at again every round until its deadline.
  constexpr absl::Duration kInlinePlanningWait = absl::Milliseconds(200);
  const absl::Time until = absl::Now() + kInlinePlanningWait;
  for (const auto& result : started) {
    absl::MutexLock lock(&result->mu);
    auto done = [&result]() ABSL_SHARED_LOCKS_REQUIRED(result->mu) {
      return result->done;
    };
    result->mu.AwaitWithDeadline(absl::Condition(&done), until);
  }
  absl::MutexLock lock(&mu_);
  ApplyFinishedPlans();
  ExpireLeases();
  CheckTrainerGroups();
  UpdateGauges();
}

std::string Coordinator::MissingRanks(const std::string& job_id) {
  const RendezvousState* rv = nullptr;
  auto r = rendezvous_.find(job_id);
  const JobRecord& job = jobs_[job_id];
  if (r != rendezvous_.end() &&
      r->second.generation == job.training_generation())
    rv = &r->second;
  int trainers = 0;
  for (const auto& [wid, w] : workers_)
    if (w.info().role() == lft::v1::WORKER_ROLE_TRAINER) ++trainers;
  std::vector<std::string> missing;
  uint32_t world = 0;
  for (const std::string& task_id : job_tasks_[job_id]) {
    const TaskRecord& t = tasks_[task_id];
    if (!t.task().has_training()) continue;
    const uint32_t rank = t.task().training().rank();
    world = t.task().training().world_size();
    if (rv != nullptr && rv->joined.count(rank) > 0) continue;
    if (t.state() == lft::v1::TASK_STATE_LEASED) {
      missing.push_back(absl::StrCat("rank ", rank, " (leased to ",
                                     t.worker_id(), ", not joined yet)"));
    } else {
      missing.push_back(
          absl::StrCat("rank ", rank, " (no trainer worker has taken it)"));
    }
  }
  return absl::StrCat(
      world - missing.size(), " of ", world, " ranks joined; missing ",
      absl::StrJoin(missing, ", "), "; ", trainers,
      " trainer worker(s) registered: start more trainer workers or lower "
      "training.trainer_ranks");
}

void Coordinator::CheckTrainerGroups() {
  const int64_t now = clock_->NowUnixMs();
  for (auto& [id, record] : jobs_) {
    const JobState state = record.job().state();
    bool training_open = false;
    if (auto job_counts = counts_.find(id); job_counts != counts_.end()) {
      auto kind = job_counts->second.find(lft::v1::Task::kTraining);
      training_open =
          kind != job_counts->second.end() && kind->second.unfinished > 0;
    }
    if (IsTerminal(state) || !training_open ||
        record.formed_generation() == record.training_generation()) {
      group_waits_.erase(id);
      if (IsTerminal(state) || !training_open) dissolved_unix_ms_.erase(id);
      continue;
    }
    GroupWait& wait = group_waits_[id];
    if (wait.generation != record.training_generation()) {
      wait = GroupWait();
      wait.generation = record.training_generation();
      wait.since_unix_ms = now;
    }
    const int64_t waited_ms = now - wait.since_unix_ms;
    const bool past_deadline = options_.group_deadline_ms > 0 &&
                               waited_ms >= options_.group_deadline_ms;
    if (!past_deadline &&
        (wait.reported || waited_ms < options_.group_notice_ms)) {
      continue;
    }
    const std::string what =
        absl::StrCat("trainer group generation ", wait.generation, " of job ",
                     id, " has waited ", waited_ms / 1000,
                     " s for its ranks: ", MissingRanks(id));
    Transition tx(this);
    JobRecord* job = tx.Job(id);
    if (past_deadline) {
      FailJob(&tx, job,
              absl::StrCat(what, " (the coordinator's --group-deadline-ms is ",
                           options_.group_deadline_ms, ")"));
    } else {
      job->mutable_job()->set_waiting_reason(what);
      AppendEvent(&tx, job, what, false);
    }
    // A failed write is retried at the next tick.
    absl::Status s = tx.Commit();
    if (!s.ok()) {
      LogError("reporting a trainer group short of ranks failed",
               {{"job", id}, {"error", s.ToString()}});
      continue;
    }
    if (!past_deadline) group_waits_[id].reported = true;
  }
}

void Coordinator::StartBackgroundLoop(absl::Duration period) {
  loop_ = std::thread([this, period] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto stop = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return shutting_down_;
        };
        if (mu_.AwaitWithTimeout(absl::Condition(&stop), period)) return;
      }
      Tick();
    }
  });
}

void Coordinator::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    changed_.SignalAll();
  }
  if (loop_.joinable()) loop_.join();
}

void Coordinator::UpdateGauges() {
  if (metrics_ == nullptr) return;
  std::map<JobState, int> jobs;
  for (int s = lft::v1::JOB_STATE_PENDING; s <= lft::v1::JOB_STATE_CANCELLED;
       ++s) {
    jobs[static_cast<JobState>(s)] = 0;
  }
  for (const auto& [id, r] : jobs_) ++jobs[r.job().state()];
  for (const auto& [s, n] : jobs) {
    metrics_
        ->Gauge("lft_coordinator_jobs", "Jobs by state",
                {{"state", ShortJobState(s)}})
        .Set(n);
  }
  std::map<TaskState, int> tasks;
  for (int s = lft::v1::TASK_STATE_QUEUED; s <= lft::v1::TASK_STATE_CANCELLED;
       ++s) {
    tasks[static_cast<TaskState>(s)] = 0;
  }
  for (const auto& [id, t] : tasks_) ++tasks[t.state()];
  for (const auto& [s, n] : tasks) {
    metrics_
        ->Gauge("lft_coordinator_tasks", "Tasks by state",
                {{"state", ShortTaskState(s)}})
        .Set(n);
  }
  std::map<std::string, int> roles = {
      {"teacher", 0}, {"trainer", 0}, {"evaluator", 0}};
  for (const auto& [id, w] : workers_) {
    switch (w.info().role()) {
      case lft::v1::WORKER_ROLE_TEACHER:
        ++roles["teacher"];
        break;
      case lft::v1::WORKER_ROLE_TRAINER:
        ++roles["trainer"];
        break;
      case lft::v1::WORKER_ROLE_EVALUATOR:
        ++roles["evaluator"];
        break;
      default:
        break;
    }
  }
  for (const auto& [role, n] : roles) {
    metrics_
        ->Gauge("lft_coordinator_workers", "Registered workers by role",
                {{"role", role}})
        .Set(n);
  }
  metrics_->Counter(
      "lft_coordinator_leases_expired_total",
      "Task leases lost because their worker stopped heartbeating");
}

std::vector<TaskRecord> Coordinator::TasksOfJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  std::vector<TaskRecord> out;
  for (const std::string& id : job_tasks_[job_id]) out.push_back(tasks_[id]);
  return out;
}

std::vector<WorkerRecord> Coordinator::Workers() {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

}  // namespace lft
