#include "coordinator/coordinator.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/job_spec.h"
#include "common/base/job_state.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/base/teacher_config.h"

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

lft::v1::PhaseProgress MakeProgress(JobState phase, const std::string& unit,
                                    uint64_t done, uint64_t total,
                                    int64_t started_ms, int64_t now_ms) {
  lft::v1::PhaseProgress p;
  p.set_phase(phase);
  p.set_unit(unit);
  p.set_units_done(done);
  p.set_units_total(total);
  const double seconds = (now_ms - started_ms) / 1000.0;
  if (started_ms > 0 && seconds > 0 && done > 0) {
    const double rate = done / seconds;
    p.set_units_per_second(rate);
    if (total > done) p.set_eta_seconds((total - done) / rate);
  }
  return p;
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
                       StateStore::Open(db_path));
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
  LFT_RETURN_IF_ERROR(
      store_->Scan(kJobsPrefix, [&](absl::string_view k, absl::string_view v) {
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
    const TaskState state = t.state();
    TaskRecord& stored = tasks_[t.task().task_id()] = std::move(t);
    // Rebuild the queue index and the per-job counts.
    stored.set_state(lft::v1::TASK_STATE_UNSPECIFIED);
    SetTaskState(&stored, state);
  }
  const int64_t now = clock_->NowUnixMs();
  LFT_RETURN_IF_ERROR(store_->Scan(
      kWorkersPrefix, [&](absl::string_view k, absl::string_view v) {
        WorkerRecord r;
        if (!r.ParseFromArray(v.data(), static_cast<int>(v.size())))
          return corrupt(k);
        // Grace: a worker that survived our restart keeps its leases if it
        // heartbeats within two leases (it first has to reconnect).
        r.set_last_seen_unix_ms(now + options_.lease_duration_ms);
        workers_[r.worker_id()] = std::move(r);
      }));
  LFT_RETURN_IF_ERROR(store_->Scan(
      kEventsPrefix, [&](absl::string_view k, absl::string_view v) {
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

absl::Status Coordinator::PutJob(const JobRecord& job) {
  return store_->Write(
      {{absl::StrCat(kJobsPrefix, job.job().id()), job.SerializeAsString()}});
}

absl::Status Coordinator::PutTask(const TaskRecord& task) {
  return store_->Write({{absl::StrCat(kTasksPrefix, task.task().task_id()),
                         task.SerializeAsString()}});
}

absl::Status Coordinator::PutWorker(const WorkerRecord& worker) {
  return store_->Write({{absl::StrCat(kWorkersPrefix, worker.worker_id()),
                         worker.SerializeAsString()}});
}

void Coordinator::AppendEvent(JobRecord* job, const std::string& message,
                              bool with_progress) {
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
  absl::Status s = store_->Write(
      {{EventKey(e.job_id(), e.sequence()), e.SerializeAsString()},
       {absl::StrCat(kJobsPrefix, job->job().id()), job->SerializeAsString()}});
  if (!s.ok()) LogError("persisting event failed", {{"error", s.ToString()}});
  if (!message.empty()) LogInfo(message, {{"job", e.job_id()}});
  events_[e.job_id()].push_back(std::move(e));
  changed_.SignalAll();
}

void Coordinator::SetJobState(JobRecord* job, JobState state,
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
  RecomputeProgress(job);
  AppendEvent(job, message, /*with_progress=*/true);
}

void Coordinator::CloseOpenTasks(const std::string& job_id) {
  for (const std::string& id : job_tasks_[job_id]) {
    TaskRecord& t = tasks_[id];
    if (!TaskOpen(t)) continue;
    SetTaskState(&t, lft::v1::TASK_STATE_CANCELLED);
    absl::Status s = PutTask(t);
    if (!s.ok()) LogError("persisting task failed", {{"error", s.ToString()}});
  }
  rendezvous_.erase(job_id);
}

void Coordinator::FailJob(JobRecord* job, const std::string& error) {
  job->mutable_job()->set_error(error);
  CloseOpenTasks(job->job().id());
  SetJobState(job, lft::v1::JOB_STATE_FAILED,
              absl::StrCat("job failed: ", error));
}

TaskRecord* Coordinator::NewTask(JobRecord* job, const std::string& task_id) {
  TaskRecord& t = tasks_[task_id];
  t.mutable_task()->set_task_id(task_id);
  t.mutable_task()->set_job_id(job->job().id());
  *t.mutable_task()->mutable_spec() = job->job().spec();
  t.mutable_task()->set_store_address(options_.store_address);
  t.set_sequence(next_task_sequence_++);
  job_tasks_[job->job().id()].push_back(task_id);
  return &t;
}

void Coordinator::CreateTrainingTasks(JobRecord* job) {
  const uint32_t ranks = job->job().spec().training().trainer_ranks();
  job->set_training_generation(1);
  for (uint32_t r = 0; r < ranks; ++r) {
    TaskRecord* t = NewTask(job, absl::StrCat(job->job().id(), "-t", r));
    auto* tr = t->mutable_task()->mutable_training();
    tr->set_generation(1);
    tr->set_world_size(ranks);
    tr->set_rank(r);
    SetTaskState(t, lft::v1::TASK_STATE_QUEUED);
    (void)PutTask(*t);
  }
}

// ---- JobService ----

absl::StatusOr<Job> Coordinator::Submit(
    const lft::v1::SubmitJobRequest& request) {
  lft::v1::JobSpec spec = request.spec();
  ApplyJobSpecDefaults(&spec);
  LFT_ASSIGN_OR_RETURN(std::optional<TeacherShape> shape,
                       ReadTeacherShape(spec.teacher().path()));
  LFT_RETURN_IF_ERROR(SpecProblemsToStatus(ValidateJobSpec(spec, shape)));
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
  JobRecord r;
  const std::string id = absl::StrCat("j-", next_job_number_++);
  Job* job = r.mutable_job();
  job->set_id(id);
  *job->mutable_spec() = spec;
  job->set_state(lft::v1::JOB_STATE_PENDING);
  job->set_created_unix_ms(clock_->NowUnixMs());
  job->set_updated_unix_ms(job->created_unix_ms());
  r.set_request_id(request.request_id());
  r.set_sequence(next_job_number_);
  LFT_RETURN_IF_ERROR(
      store_->Write({{absl::StrCat(kJobsPrefix, id), r.SerializeAsString()},
                     {kMetaNextJob, absl::StrCat(next_job_number_)}}));
  if (!request.request_id().empty()) request_ids_[request.request_id()] = id;
  JobRecord& stored = jobs_[id] = std::move(r);
  AppendEvent(&stored,
              absl::StrCat("job ", id, " (", spec.name(), ") submitted"),
              false);
  return stored.job();
}

absl::StatusOr<Job> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) {
    return absl::NotFoundError(absl::StrCat("no job has id \"", job_id,
                                            "\" (lftctl list shows the jobs)"));
  }
  if (!IsTerminal(it->second.job().state())) RecomputeProgress(&it->second);
  return it->second.job();
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
  std::vector<JobRecord*> all;
  for (auto& [id, r] : jobs_) {
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
    if (!IsTerminal(all[i]->job().state())) RecomputeProgress(all[i]);
    *resp.add_jobs() = all[i]->job();
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
  JobRecord& job = it->second;
  if (IsTerminal(job.job().state())) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", job_id, " already finished (",
                     ShortJobState(job.job().state()), "); nothing to cancel"));
  }
  CloseOpenTasks(job_id);
  SetJobState(&job, lft::v1::JOB_STATE_CANCELLED,
              absl::StrCat("job ", job_id, " cancelled"));
  return job.job();
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
  if (id.empty()) id = absl::StrCat("w-", next_worker_number_++);
  WorkerRecord& w = workers_[id];
  w.set_worker_id(id);
  *w.mutable_info() = request.info();
  w.set_registered_unix_ms(now);
  w.set_last_seen_unix_ms(now);
  LFT_RETURN_IF_ERROR(
      store_->Write({{absl::StrCat(kWorkersPrefix, id), w.SerializeAsString()},
                     {kMetaNextWorker, absl::StrCat(next_worker_number_)}}));
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
  LFT_ASSIGN_OR_RETURN(WorkerRecord * worker, FindWorker(request.worker_id()));
  (void)worker;
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
    it->second.mutable_task()->set_lease_expiry_unix_ms(expiry);
  }
  return resp;
}

TaskRecord* Coordinator::FindQueuedTask(WorkerRole role) {
  auto it = queued_.find(role);
  if (it == queued_.end() || it->second.empty()) return nullptr;
  return &tasks_[it->second.begin()->second];
}

void Coordinator::SetTaskState(TaskRecord* t, TaskState state) {
  const TaskState old = t->state();
  const std::string& job_id = t->task().job_id();
  const QueueKey key{{jobs_[job_id].sequence(), t->sequence()},
                     t->task().task_id()};
  const WorkerRole role = RoleOf(t->task());
  if (old == lft::v1::TASK_STATE_QUEUED) queued_[role].erase(key);
  if (state == lft::v1::TASK_STATE_QUEUED) queued_[role].insert(key);
  TaskCounts& counts =
      counts_[job_id][static_cast<int>(t->task().payload_case())];
  if (old == lft::v1::TASK_STATE_UNSPECIFIED) {
    ++counts.total;
    ++counts.unfinished;
  }
  if (old != lft::v1::TASK_STATE_SUCCEEDED &&
      state == lft::v1::TASK_STATE_SUCCEEDED) {
    --counts.unfinished;
  }
  t->set_state(state);
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
    TaskRecord* t = FindQueuedTask(role);
    if (t != nullptr) {
      SetTaskState(t, lft::v1::TASK_STATE_LEASED);
      t->set_worker_id(request.worker_id());
      t->mutable_task()->set_lease_expiry_unix_ms(clock_->NowUnixMs() +
                                                  options_.lease_duration_ms);
      LFT_RETURN_IF_ERROR(PutTask(*t));
      LogInfo("task leased", {{"task", t->task().task_id()},
                              {"worker", request.worker_id()},
                              {"attempt", t->attempts() + 1}});
      *resp.mutable_task() = t->task();
      return resp;
    }
    if (changed_.WaitWithDeadline(&mu_, deadline)) return resp;
  }
}

absl::StatusOr<lft::v1::ReportProgressResponse> Coordinator::ReportProgress(
    const lft::v1::ReportProgressRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(WorkerRecord * worker, FindWorker(request.worker_id()));
  (void)worker;
  auto it = tasks_.find(request.task_id());
  if (it == tasks_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no task has id \"", request.task_id(), "\""));
  }
  TaskRecord& t = it->second;
  lft::v1::ReportProgressResponse resp;
  if (t.state() != lft::v1::TASK_STATE_LEASED ||
      t.worker_id() != request.worker_id()) {
    resp.set_keep_going(false);
    return resp;
  }
  resp.set_keep_going(true);
  t.set_tokens_done(request.tokens_done());
  t.set_steps_done(request.steps_done());
  t.set_documents_done(request.documents_done());
  t.set_sequences_done(request.sequences_done());
  t.set_loss(request.loss());
  if (!request.checkpoint().empty()) t.set_checkpoint(request.checkpoint());
  LFT_RETURN_IF_ERROR(PutTask(t));
  JobRecord& job = jobs_[t.task().job_id()];
  if (t.task().has_training()) {
    if (!request.checkpoint().empty() && t.task().training().rank() == 0) {
      job.set_latest_checkpoint(request.checkpoint());
    }
    if (t.task().training().rank() == 0) {
      job.mutable_job()->set_latest_loss(request.loss());
      job.mutable_job()->set_latest_step(request.steps_done());
    }
  }
  MaybeProgressEvent(&job);
  return resp;
}

absl::StatusOr<lft::v1::CompleteTaskResponse> Coordinator::CompleteTask(
    const lft::v1::CompleteTaskRequest& request) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(WorkerRecord * worker, FindWorker(request.worker_id()));
  (void)worker;
  auto it = tasks_.find(request.task_id());
  if (it == tasks_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no task has id \"", request.task_id(), "\""));
  }
  TaskRecord& t = it->second;
  if (t.state() != lft::v1::TASK_STATE_LEASED ||
      t.worker_id() != request.worker_id()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "task ", request.task_id(), " is no longer leased to worker ",
        request.worker_id(),
        " (lease expired, job ended or group re-formed); its output will be "
        "overwritten by the re-run"));
  }
  JobRecord& job = jobs_[t.task().job_id()];
  if (!request.error().empty()) {
    t.set_attempts(t.attempts() + 1);
    t.set_error(request.error());
    if (t.attempts() >= options_.max_task_attempts) {
      SetTaskState(&t, lft::v1::TASK_STATE_FAILED);
      LFT_RETURN_IF_ERROR(PutTask(t));
      FailJob(&job, absl::StrCat(Describe(t), " failed ", t.attempts(),
                                 " times; last error: ", request.error()));
    } else {
      SetTaskState(&t, lft::v1::TASK_STATE_QUEUED);
      LFT_RETURN_IF_ERROR(PutTask(t));
      AppendEvent(&job,
                  absl::StrCat(Describe(t), " failed on worker ",
                               request.worker_id(), ": ", request.error(),
                               "; retrying (attempt ", t.attempts() + 1, " of ",
                               options_.max_task_attempts, ")"),
                  false);
      if (t.task().has_training())
        ReformTrainerGroup(&job, "a trainer rank failed");
    }
    return lft::v1::CompleteTaskResponse();
  }
  SetTaskState(&t, lft::v1::TASK_STATE_SUCCEEDED);
  t.set_pairs_written(request.pairs_written());
  if (!request.checkpoint().empty()) t.set_checkpoint(request.checkpoint());
  if (t.task().has_extraction()) {
    const auto& e = t.task().extraction();
    if (e.end_document() > e.first_document()) {
      t.set_documents_done(e.end_document() - e.first_document());
    }
  }
  LFT_RETURN_IF_ERROR(PutTask(t));
  if (t.task().has_training() && t.task().training().rank() == 0 &&
      !request.checkpoint().empty()) {
    job.set_latest_checkpoint(request.checkpoint());
  }
  AdvanceJob(&job);
  changed_.SignalAll();
  return lft::v1::CompleteTaskResponse();
}

absl::StatusOr<lft::v1::RendezvousResponse> Coordinator::Rendezvous(
    const lft::v1::RendezvousRequest& request, absl::Duration max_wait) {
  absl::MutexLock lock(&mu_);
  LFT_ASSIGN_OR_RETURN(WorkerRecord * worker, FindWorker(request.worker_id()));
  (void)worker;
  auto it = tasks_.find(request.task_id());
  if (it == tasks_.end() || !it->second.task().has_training()) {
    return absl::NotFoundError(
        absl::StrCat("no training task has id \"", request.task_id(), "\""));
  }
  const std::string job_id = it->second.task().job_id();
  const uint32_t rank = it->second.task().training().rank();
  const uint32_t world = it->second.task().training().world_size();
  auto check = [&]() -> absl::Status {
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

void Coordinator::AdvanceJob(JobRecord* job) {
  if (IsTerminal(job->job().state())) return;
  const std::string& id = job->job().id();
  const TaskCounts& extraction = counts_[id][lft::v1::Task::kExtraction];
  const TaskCounts& training = counts_[id][lft::v1::Task::kTraining];
  const TaskCounts& evaluation = counts_[id][lft::v1::Task::kEvaluation];
  const JobState state = job->job().state();
  if (state == lft::v1::JOB_STATE_EXTRACTING && extraction.unfinished == 0) {
    if (training.total == 0) CreateTrainingTasks(job);
    SetJobState(
        job, lft::v1::JOB_STATE_TRAINING,
        absl::StrCat("extraction done; training with ",
                     job->job().spec().training().trainer_ranks(), " rank(s)"));
    return AdvanceJob(job);
  }
  if (state == lft::v1::JOB_STATE_TRAINING && training.total > 0 &&
      training.unfinished == 0) {
    if (evaluation.total == 0) {
      auto rank0 = tasks_.find(absl::StrCat(id, "-t0"));
      const std::string checkpoint =
          rank0 != tasks_.end() && !rank0->second.checkpoint().empty()
              ? rank0->second.checkpoint()
              : job->latest_checkpoint();
      TaskRecord* t = NewTask(job, absl::StrCat(id, "-e"));
      t->mutable_task()->mutable_evaluation()->set_checkpoint(checkpoint);
      SetTaskState(t, lft::v1::TASK_STATE_QUEUED);
      (void)PutTask(*t);
    }
    SetJobState(job, lft::v1::JOB_STATE_EVALUATING,
                "training done; evaluating");
    return;
  }
  if (state == lft::v1::JOB_STATE_EVALUATING && evaluation.total > 0 &&
      evaluation.unfinished == 0) {
    SetJobState(job, lft::v1::JOB_STATE_SUCCEEDED,
                absl::StrCat("job ", id, " succeeded"));
  }
}

void Coordinator::RequeueTask(TaskRecord* task, const std::string& reason) {
  JobRecord& job = jobs_[task->task().job_id()];
  task->set_attempts(task->attempts() + 1);
  task->set_error(reason);
  if (task->attempts() >= options_.max_task_attempts) {
    SetTaskState(task, lft::v1::TASK_STATE_FAILED);
    (void)PutTask(*task);
    FailJob(&job, absl::StrCat(Describe(*task), " was lost ", task->attempts(),
                               " times; last: ", reason));
    return;
  }
  SetTaskState(task, lft::v1::TASK_STATE_QUEUED);
  task->set_tokens_done(0);
  task->set_documents_done(0);
  task->set_sequences_done(0);
  (void)PutTask(*task);
  AppendEvent(&job,
              absl::StrCat(reason, "; ", Describe(*task), " requeued (attempt ",
                           task->attempts() + 1, " of ",
                           options_.max_task_attempts, ")"),
              false);
  if (task->task().has_training()) ReformTrainerGroup(&job, reason);
  changed_.SignalAll();
}

void Coordinator::ReformTrainerGroup(JobRecord* job,
                                     const std::string& reason) {
  const uint64_t generation = job->training_generation() + 1;
  job->set_training_generation(generation);
  for (const std::string& id : job_tasks_[job->job().id()]) {
    TaskRecord& t = tasks_[id];
    if (!t.task().has_training() || !TaskOpen(t)) continue;
    // Holders of the old generation see the task revoked at their next
    // heartbeat and get Aborted from Rendezvous.
    SetTaskState(&t, lft::v1::TASK_STATE_QUEUED);
    auto* tr = t.mutable_task()->mutable_training();
    tr->set_generation(generation);
    tr->set_resume_checkpoint(job->latest_checkpoint());
    (void)PutTask(t);
  }
  rendezvous_.erase(job->job().id());
  AppendEvent(job,
              absl::StrCat("trainer group re-formed as generation ", generation,
                           " (", reason, ")",
                           job->latest_checkpoint().empty()
                               ? ""
                               : absl::StrCat("; resuming from ",
                                              job->latest_checkpoint())),
              false);
  changed_.SignalAll();
}

void Coordinator::RecomputeProgress(JobRecord* job) {
  const int64_t now = clock_->NowUnixMs();
  uint64_t tokens = 0, docs = 0, steps = 0, train_tokens = 0, sequences = 0;
  bool any_eval = false, any_train = false;
  for (const std::string& id : job_tasks_[job->job().id()]) {
    const TaskRecord& t = tasks_[id];
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
    }
  }
  Job* j = job->mutable_job();
  j->clear_progress();
  const lft::v1::JobSpec& spec = j->spec();
  if (job->planned()) {
    uint64_t total = 0;
    if (docs > 0 && job->documents_total() > 0) {
      total = static_cast<uint64_t>(static_cast<double>(tokens) *
                                    job->documents_total() / docs);
    }
    *j->add_progress() =
        MakeProgress(lft::v1::JOB_STATE_EXTRACTING, "tokens", tokens, total,
                     job->extracting_started_unix_ms(), now);
  }
  if (any_train) {
    const bool by_steps = spec.training().max_steps() > 0;
    *j->add_progress() = MakeProgress(
        lft::v1::JOB_STATE_TRAINING, by_steps ? "steps" : "tokens",
        by_steps ? steps : train_tokens,
        by_steps ? spec.training().max_steps() : spec.training().max_tokens(),
        job->training_started_unix_ms(), now);
  }
  if (any_eval) {
    *j->add_progress() =
        MakeProgress(lft::v1::JOB_STATE_EVALUATING, "sequences", sequences,
                     spec.evaluation().max_sequences(),
                     job->evaluating_started_unix_ms(), now);
  }
}

void Coordinator::MaybeProgressEvent(JobRecord* job) {
  const int64_t now = clock_->NowUnixMs();
  if (now - job->last_progress_event_unix_ms() <
      options_.progress_event_interval_ms) {
    return;
  }
  job->set_last_progress_event_unix_ms(now);
  RecomputeProgress(job);
  AppendEvent(job, "", /*with_progress=*/true);
}

void Coordinator::PlanPendingJobs() {
  std::vector<std::pair<std::string, lft::v1::CorpusSpec>> pending;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, r] : jobs_) {
      if (r.job().state() == lft::v1::JOB_STATE_PENDING && !r.planned()) {
        pending.emplace_back(id, r.job().spec().corpus());
      }
    }
  }
  for (const auto& [id, corpus] : pending) {
    // Sharding reads the corpus; it runs without the lock.
    absl::StatusOr<std::vector<lft::v1::ExtractionTask>> shards =
        sharding_->Shard(corpus);
    absl::MutexLock lock(&mu_);
    JobRecord& job = jobs_[id];
    if (job.job().state() != lft::v1::JOB_STATE_PENDING || job.planned())
      continue;
    if (!shards.ok()) {
      FailJob(&job, std::string(shards.status().message()));
      continue;
    }
    uint64_t docs = 0;
    for (const auto& shard : *shards) {
      TaskRecord* t =
          NewTask(&job, absl::StrCat(id, "-x", shard.shard_index()));
      *t->mutable_task()->mutable_extraction() = shard;
      SetTaskState(t, lft::v1::TASK_STATE_QUEUED);
      if (shard.end_document() > shard.first_document()) {
        docs += shard.end_document() - shard.first_document();
      }
      (void)PutTask(*t);
    }
    job.set_planned(true);
    job.set_documents_total(docs);
    if (job.job().spec().training().streaming()) CreateTrainingTasks(&job);
    SetJobState(&job, lft::v1::JOB_STATE_EXTRACTING,
                absl::StrCat("corpus sharded into ", shards->size(),
                             " extraction task(s) over ", docs, " documents"));
  }
}

void Coordinator::ExpireLeases() {
  const int64_t now = clock_->NowUnixMs();
  std::vector<std::string> dead;
  for (const auto& [id, w] : workers_) {
    if (now - w.last_seen_unix_ms() > options_.lease_duration_ms)
      dead.push_back(id);
  }
  for (const std::string& id : dead) {
    LogWarning("worker forgotten after missing heartbeats", {{"worker", id}});
    workers_.erase(id);
    (void)store_->Write({{absl::StrCat(kWorkersPrefix, id), std::nullopt}});
  }
  for (auto& [id, t] : tasks_) {
    if (t.state() != lft::v1::TASK_STATE_LEASED) continue;
    const bool holder_gone = workers_.count(t.worker_id()) == 0;
    if (!holder_gone && t.task().lease_expiry_unix_ms() > now) continue;
    if (metrics_ != nullptr) {
      metrics_
          ->Counter(
              "lft_coordinator_leases_expired_total",
              "Task leases lost because their worker stopped heartbeating")
          .Increment();
    }
    RequeueTask(
        &t, absl::StrCat("worker ", t.worker_id(), " lost its lease on task ",
                         t.task().task_id()));
  }
}

void Coordinator::Tick() {
  PlanPendingJobs();
  absl::MutexLock lock(&mu_);
  ExpireLeases();
  UpdateGauges();
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
