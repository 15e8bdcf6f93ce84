// Coordinator core without gRPC: state machine, leases with a fake clock,
// rendezvous, cancellation, retries and recovery from RocksDB.
#include "coordinator/coordinator.h"

#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "common/base/prometheus_metrics.h"
#include "common/base/teacher_config.h"
#include "tests/unit/coordinator/coordinator_fixture.h"

namespace lft {
namespace {

using lft::v1::JobState;
using ::testing::HasSubstr;

TEST_F(CoordinatorTest, SubmitRejectsMalformedSpecListingEveryField) {
  lft::v1::SubmitJobRequest r;
  r.mutable_spec()->set_name("Bad Name");
  auto job = core_->Submit(r);
  EXPECT_THAT(
      job, StatusIs(absl::StatusCode::kInvalidArgument, "name: \"Bad Name\""));
  EXPECT_THAT(job,
              StatusIs(absl::StatusCode::kInvalidArgument, "teacher.path:"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "corpus: name jsonl_zst_paths"));
}

TEST_F(CoordinatorTest, SubmitChecksBlockAgainstTeacherConfig) {
  const std::string teacher = dir_.path() + "/teacher";
  std::filesystem::create_directories(teacher);
  std::ofstream(teacher + "/config.json")
      << R"({"num_hidden_layers": 24, "max_position_embeddings": 2048})";
  lft::v1::JobSpec spec = ValidSpec(teacher);
  spec.mutable_block()->set_first_layer(20);
  spec.mutable_block()->set_end_layer(30);
  spec.set_sequence_length(4096);
  lft::v1::SubmitJobRequest r;
  *r.mutable_spec() = spec;
  auto job = core_->Submit(r);
  EXPECT_THAT(
      job,
      StatusIs(absl::StatusCode::kInvalidArgument,
               "block: block [20, 30) is outside the teacher's 24 layers"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "4096 exceeds the teacher's 2048 positions"));
}

TEST_F(CoordinatorTest, MalformedTeacherConfigIsNamed) {
  const std::string teacher = dir_.path() + "/teacher";
  std::filesystem::create_directories(teacher);
  std::ofstream(teacher + "/config.json") << R"({"hidden_size": 64})";
  EXPECT_THAT(
      ReadTeacherShape(teacher),
      StatusIs(absl::StatusCode::kInvalidArgument, "num_hidden_layers"));
  EXPECT_FALSE(ReadTeacherShape(dir_.path() + "/absent")->has_value());
}

TEST_F(CoordinatorTest, SubmitIsIdempotentPerRequestId) {
  lft::v1::SubmitJobRequest r;
  *r.mutable_spec() = ValidSpec();
  r.set_request_id("abc");
  auto a = core_->Submit(r);
  auto b = core_->Submit(r);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->id(), b->id());
  EXPECT_EQ(core_->ListJobs({})->jobs_size(), 1);
}

TEST_F(CoordinatorTest, JobRunsThroughEveryPhase) {
  const std::string job = SubmitAndPlan();
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_EXTRACTING);
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "t");
  for (int i = 0; i < 3; ++i) {
    lft::v1::Task t = Acquire(teacher);
    ASSERT_TRUE(t.has_extraction());
    EXPECT_EQ(t.extraction().shard_index(), static_cast<uint32_t>(i));
    lft::v1::ReportProgressRequest p;
    p.set_worker_id(teacher);
    p.set_task_id(t.task_id());
    p.set_documents_done(5);
    p.set_tokens_done(500);
    clock_.AdvanceMs(1000);
    EXPECT_TRUE(core_->ReportProgress(p)->keep_going());
    if (i == 0) {
      const lft::v1::PhaseProgress prog = core_->GetJob(job)->progress(0);
      EXPECT_EQ(prog.unit(), "tokens");
      EXPECT_EQ(prog.units_done(), 500u);
      EXPECT_EQ(prog.units_total(), 3000u);  // 500 tokens per 5 of 30 docs
      EXPECT_DOUBLE_EQ(prog.units_per_second(), 500.0);
      EXPECT_DOUBLE_EQ(prog.eta_seconds(), 5.0);
    }
    ASSERT_TRUE(Complete(teacher, t.task_id()).ok());
  }
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_TRAINING);
  const std::string trainer = Register(lft::v1::WORKER_ROLE_TRAINER, "tr");
  lft::v1::Task t = Acquire(trainer);
  ASSERT_TRUE(t.has_training());
  EXPECT_EQ(t.training().world_size(), 1u);
  lft::v1::RendezvousRequest rv;
  rv.set_worker_id(trainer);
  rv.set_task_id(t.task_id());
  rv.set_generation(t.training().generation());
  EXPECT_THAT(
      core_->Rendezvous(rv, absl::Seconds(1)),
      StatusIs(absl::StatusCode::kInvalidArgument, "rank 0 must publish"));
  rv.set_communicator_id("nccl-id");
  auto joined = core_->Rendezvous(rv, absl::Seconds(1));
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->communicator_id(), "nccl-id");
  ASSERT_TRUE(Complete(trainer, t.task_id(), "", "ckpt/step-20").ok());
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_EVALUATING);
  const std::string evaluator = Register(lft::v1::WORKER_ROLE_EVALUATOR, "e");
  t = Acquire(evaluator);
  ASSERT_TRUE(t.has_evaluation());
  EXPECT_EQ(t.evaluation().checkpoint(), "ckpt/step-20");
  ASSERT_TRUE(Complete(evaluator, t.task_id()).ok());
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_SUCCEEDED);

  bool finished = false;
  auto events = core_->WaitForEvents(job, 0, absl::ZeroDuration(), &finished);
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(finished);
  std::vector<JobState> states;
  for (const auto& e : *events) {
    if (states.empty() || states.back() != e.state())
      states.push_back(e.state());
  }
  EXPECT_EQ(states,
            (std::vector<JobState>{
                lft::v1::JOB_STATE_PENDING, lft::v1::JOB_STATE_EXTRACTING,
                lft::v1::JOB_STATE_TRAINING, lft::v1::JOB_STATE_EVALUATING,
                lft::v1::JOB_STATE_SUCCEEDED}));
  core_->Tick();  // gauges are refreshed by the background loop
  EXPECT_THAT(metrics_.RenderText(),
              HasSubstr("lft_coordinator_jobs{state=\"SUCCEEDED\"} 1"));
}

TEST_F(CoordinatorTest, SilentWorkerLosesLeaseAndTaskIsRerunWithSameShard) {
  const std::string job = SubmitAndPlan();
  const std::string a = Register(lft::v1::WORKER_ROLE_TEACHER, "a");
  lft::v1::Task first = Acquire(a);
  clock_.AdvanceMs(kLeaseMs + 1);
  const std::string b = Register(lft::v1::WORKER_ROLE_TEACHER, "b");
  core_->Tick();
  lft::v1::HeartbeatRequest hb;
  hb.set_worker_id(a);
  EXPECT_THAT(core_->Heartbeat(hb),
              StatusIs(absl::StatusCode::kNotFound, "register again"));
  lft::v1::Task again = Acquire(b);
  EXPECT_EQ(again.task_id(), first.task_id());
  EXPECT_EQ(again.extraction().shard_index(), first.extraction().shard_index());
  EXPECT_THAT(Complete(a, first.task_id()),
              StatusIs(absl::StatusCode::kNotFound, "is not registered"));
  ASSERT_TRUE(Complete(b, again.task_id()).ok());
  EXPECT_THAT(metrics_.RenderText(),
              HasSubstr("lft_coordinator_leases_expired_total 1"));
  auto tasks = core_->TasksOfJob(job);
  EXPECT_EQ(tasks[0].attempts(), 1u);
  EXPECT_EQ(tasks[0].state(), lft::v1::TASK_STATE_SUCCEEDED);
}

TEST_F(CoordinatorTest, HeartbeatRenewsLeaseAndStaleHolderCannotComplete) {
  SubmitAndPlan();
  const std::string a = Register(lft::v1::WORKER_ROLE_TEACHER, "a");
  lft::v1::Task t = Acquire(a);
  for (int i = 0; i < 5; ++i) {
    clock_.AdvanceMs(kLeaseMs / 2);
    lft::v1::HeartbeatRequest hb;
    hb.set_worker_id(a);
    hb.add_task_ids(t.task_id());
    auto resp = core_->Heartbeat(hb);
    ASSERT_TRUE(resp.ok());
    EXPECT_TRUE(resp->revoked_task_ids().empty());
    core_->Tick();
  }
  // The lease holds; a heartbeat listing a task we do not hold revokes it.
  lft::v1::HeartbeatRequest hb;
  hb.set_worker_id(a);
  hb.add_task_ids("j-1-x2");
  EXPECT_EQ(core_->Heartbeat(hb)->revoked_task_ids_size(), 1);
  const std::string b = Register(lft::v1::WORKER_ROLE_TEACHER, "b");
  EXPECT_THAT(Complete(b, t.task_id()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "is no longer leased to worker"));
  EXPECT_TRUE(Complete(a, t.task_id()).ok());
}

TEST_F(CoordinatorTest, CancelRevokesLeasesAndRefusesFinishedJobs) {
  const std::string job = SubmitAndPlan();
  const std::string a = Register(lft::v1::WORKER_ROLE_TEACHER, "a");
  lft::v1::Task t = Acquire(a);
  auto cancelled = core_->Cancel(job);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state(), lft::v1::JOB_STATE_CANCELLED);
  lft::v1::HeartbeatRequest hb;
  hb.set_worker_id(a);
  hb.add_task_ids(t.task_id());
  EXPECT_EQ(core_->Heartbeat(hb)->revoked_task_ids(0), t.task_id());
  lft::v1::ReportProgressRequest p;
  p.set_worker_id(a);
  p.set_task_id(t.task_id());
  EXPECT_FALSE(core_->ReportProgress(p)->keep_going());
  EXPECT_FALSE(Acquire(a).has_extraction());
  EXPECT_THAT(core_->Cancel(job),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "already finished (CANCELLED)"));
  EXPECT_THAT(core_->Cancel("j-99"),
              StatusIs(absl::StatusCode::kNotFound, "no job has id"));
  EXPECT_THAT(core_->GetJob("j-99"),
              StatusIs(absl::StatusCode::kNotFound, "\"j-99\""));
}

TEST_F(CoordinatorTest, TaskFailingBeyondBudgetFailsJobWithItsError) {
  const std::string job = SubmitAndPlan();
  const std::string a = Register(lft::v1::WORKER_ROLE_TEACHER, "a");
  for (int i = 0; i < 3; ++i) {
    lft::v1::Task t = Acquire(a);
    EXPECT_EQ(t.task_id(), "j-1-x0");
    ASSERT_TRUE(Complete(a, t.task_id(), "corrupt zstd frame at byte 17").ok());
  }
  auto j = core_->GetJob(job);
  EXPECT_EQ(j->state(), lft::v1::JOB_STATE_FAILED);
  EXPECT_THAT(j->error(),
              HasSubstr("failed 3 times; last error: corrupt zstd frame"));
  EXPECT_THAT(j->error(), HasSubstr("shard 0"));
}

TEST_F(CoordinatorTest, ShardingErrorFailsJob) {
  sharding_.error =
      absl::NotFoundError("corpus.jsonl_zst_paths[0]: no such file");
  const std::string job = SubmitAndPlan();
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_FAILED);
  EXPECT_THAT(core_->GetJob(job)->error(), HasSubstr("no such file"));
}

// With 2 ranks too: both training tasks exist from the start and name the
// job's extraction shards (the trainers' end-of-stream test).
// Streaming reads a single store's seals and ranges: a coordinator that
// spreads jobs over several stores refuses a streaming job at Submit and
// still takes a cached one.
TEST_F(CoordinatorTest, StreamingOverSeveralStoresIsRefusedAtSubmit) {
  store_address_ = "127.0.0.1:1,127.0.0.1:2";
  Reopen();
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_streaming(true);
  lft::v1::SubmitJobRequest r;
  *r.mutable_spec() = spec;
  EXPECT_THAT(core_->Submit(r),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "training.streaming: streaming reads need a single"));
  spec.mutable_training()->set_streaming(false);
  *r.mutable_spec() = spec;
  EXPECT_TRUE(core_->Submit(r).ok());
}

TEST_F(CoordinatorTest, StreamingJobTrainsWhileExtracting) {
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_streaming(true);
  spec.mutable_training()->set_trainer_ranks(2);
  spec.mutable_training()->set_global_batch_sequences(16);
  const std::string job = SubmitAndPlan(spec);
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_EXTRACTING);
  for (const char* name : {"tr0", "tr1"}) {
    const std::string trainer = Register(lft::v1::WORKER_ROLE_TRAINER, name);
    lft::v1::Task t = Acquire(trainer);
    ASSERT_TRUE(t.has_training()) << name;
    EXPECT_EQ(t.spec().training().streaming_buffer_pairs(),
              4ull * t.spec().training().global_batch_sequences());
    EXPECT_EQ(t.training().world_size(), 2u);
    EXPECT_EQ(t.training().extraction_shards(), 3u);
  }
}

TEST_F(CoordinatorTest, LostTrainerRankReformsGroupAndAbortsStragglers) {
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_trainer_ranks(2);
  spec.mutable_training()->set_global_batch_sequences(16);
  const std::string job = SubmitAndPlan(spec);
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "x");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Complete(teacher, Acquire(teacher).task_id()).ok());
  }
  ASSERT_EQ(State(job), lft::v1::JOB_STATE_TRAINING);
  const std::string r0 = Register(lft::v1::WORKER_ROLE_TRAINER, "r0");
  const std::string r1 = Register(lft::v1::WORKER_ROLE_TRAINER, "r1");
  lft::v1::Task t0 = Acquire(r0);
  lft::v1::Task t1 = Acquire(r1);
  ASSERT_EQ(t0.training().rank(), 0u);
  ASSERT_EQ(t1.training().rank(), 1u);
  ASSERT_EQ(t0.training().generation(), 1u);
  lft::v1::ReportProgressRequest p;
  p.set_worker_id(r0);
  p.set_task_id(t0.task_id());
  p.set_steps_done(5);
  p.set_checkpoint("ckpt/step-5");
  ASSERT_TRUE(core_->ReportProgress(p)->keep_going());

  absl::StatusOr<lft::v1::RendezvousResponse> waiting;
  std::thread rank0([&] {
    lft::v1::RendezvousRequest rv;
    rv.set_worker_id(r0);
    rv.set_task_id(t0.task_id());
    rv.set_generation(1);
    rv.set_communicator_id("id-g1");
    waiting = core_->Rendezvous(rv, absl::Seconds(10));
  });
  // Rank 1 goes silent; rank 0 keeps heartbeating.
  for (int i = 0; i < 3; ++i) {
    clock_.AdvanceMs(kLeaseMs / 2);
    lft::v1::HeartbeatRequest hb;
    hb.set_worker_id(r0);
    hb.add_task_ids(t0.task_id());
    (void)core_->Heartbeat(hb);
  }
  core_->Tick();
  rank0.join();
  EXPECT_THAT(waiting, StatusIs(absl::StatusCode::kAborted, "generation 1"));
  lft::v1::HeartbeatRequest hb;
  hb.set_worker_id(r0);
  hb.add_task_ids(t0.task_id());
  EXPECT_EQ(core_->Heartbeat(hb)->revoked_task_ids_size(), 1);
  // The re-formed group: generation 2, resuming from rank 0's checkpoint.
  const std::string r2 = Register(lft::v1::WORKER_ROLE_TRAINER, "r2");
  lft::v1::Task n0 = Acquire(r0);
  lft::v1::Task n1 = Acquire(r2);
  EXPECT_EQ(n0.training().generation(), 2u);
  EXPECT_EQ(n1.training().generation(), 2u);
  EXPECT_EQ(n0.training().resume_checkpoint(), "ckpt/step-5");
  // The replacement takes 2.5 s to join: the group's recovery time.
  clock_.AdvanceMs(2500);
  absl::StatusOr<lft::v1::RendezvousResponse> a, b;
  std::thread ta([&] {
    lft::v1::RendezvousRequest rv;
    rv.set_worker_id(n0.training().rank() == 0 ? r0 : r2);
    rv.set_task_id(n0.training().rank() == 0 ? n0.task_id() : n1.task_id());
    rv.set_generation(2);
    rv.set_communicator_id("id-g2");
    a = core_->Rendezvous(rv, absl::Seconds(10));
  });
  lft::v1::RendezvousRequest rv;
  rv.set_worker_id(n0.training().rank() == 0 ? r2 : r0);
  rv.set_task_id(n0.training().rank() == 0 ? n1.task_id() : n0.task_id());
  rv.set_generation(2);
  b = core_->Rendezvous(rv, absl::Seconds(10));
  ta.join();
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << b.status();
  EXPECT_EQ(b->communicator_id(), "id-g2");
  EXPECT_EQ(b->world_size(), 2u);
  bool finished = false;
  auto events = core_->WaitForEvents(job, 0, absl::ZeroDuration(), &finished);
  ASSERT_TRUE(events.ok()) << events.status();
  bool recovery_event = false;
  for (const auto& e : *events) {
    recovery_event |=
        absl::StrContains(e.message(),
                          "generation 2 formed with 2 rank(s), 2.5 s after "
                          "generation 1 was dissolved");
  }
  EXPECT_TRUE(recovery_event);
  EXPECT_THAT(metrics_.RenderText(),
              HasSubstr("lft_coordinator_trainer_recovery_seconds_sum 2.5"));
  EXPECT_THAT(metrics_.RenderText(),
              HasSubstr("lft_coordinator_trainer_recovery_seconds_count 1"));
}

TEST_F(CoordinatorTest, StateSurvivesRestart) {
  const std::string job = SubmitAndPlan();
  const std::string a = Register(lft::v1::WORKER_ROLE_TEACHER, "a");
  lft::v1::Task t = Acquire(a);
  ASSERT_TRUE(Complete(a, t.task_id()).ok());
  lft::v1::Task t2 = Acquire(a);
  Reopen();
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_EXTRACTING);
  auto tasks = core_->TasksOfJob(job);
  ASSERT_EQ(tasks.size(), 3u);
  EXPECT_EQ(tasks[0].state(), lft::v1::TASK_STATE_SUCCEEDED);
  EXPECT_EQ(tasks[1].state(), lft::v1::TASK_STATE_LEASED);
  // The worker is still known and finishes its task.
  ASSERT_TRUE(Complete(a, t2.task_id()).ok());
  // Events continue their sequence.
  bool finished = false;
  auto events = core_->WaitForEvents(job, 0, absl::ZeroDuration(), &finished);
  for (size_t i = 0; i < events->size(); ++i)
    EXPECT_EQ((*events)[i].sequence(), i + 1);
  // A new job gets a new id.
  EXPECT_EQ(SubmitAndPlan(), "j-2");
  // A worker silent across the restart is forgotten; its lease expires.
  lft::v1::Task t3 = Acquire(a);
  Reopen();
  // Grace after a restart is two leases.
  clock_.AdvanceMs(2 * kLeaseMs - 10);
  core_->Tick();
  EXPECT_EQ(core_->TasksOfJob(job)[2].state(), lft::v1::TASK_STATE_LEASED);
  clock_.AdvanceMs(11);
  core_->Tick();
  EXPECT_EQ(core_->TasksOfJob(job)[2].state(), lft::v1::TASK_STATE_QUEUED);
  EXPECT_NE(Register(lft::v1::WORKER_ROLE_TEACHER, "a2"), a);
  (void)t3;
}

TEST_F(CoordinatorTest, ListIsNewestFirstWithFiltersAndPages) {
  for (int i = 0; i < 3; ++i) SubmitAndPlan();
  ASSERT_TRUE(core_->Cancel("j-2").ok());
  lft::v1::ListJobsRequest r;
  r.set_page_size(2);
  auto page = core_->ListJobs(r);
  ASSERT_EQ(page->jobs_size(), 2);
  EXPECT_EQ(page->jobs(0).id(), "j-3");
  r.set_page_token(page->next_page_token());
  EXPECT_EQ(core_->ListJobs(r)->jobs(0).id(), "j-1");
  lft::v1::ListJobsRequest f;
  f.add_states(lft::v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(core_->ListJobs(f)->jobs_size(), 1);
  f.set_page_token("zz");
  EXPECT_THAT(core_->ListJobs(f),
              StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
}

}  // namespace
}  // namespace lft

namespace lft {
namespace {

// Regression: a streaming job whose corpus packs into fewer pairs than one
// global batch stayed in TRAINING forever (its trainers waited for a batch).
TEST_F(CoordinatorTest, StreamingJobWithFewerPairsThanOneBatchFails) {
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_streaming(true);
  spec.mutable_training()->set_global_batch_sequences(16);
  const std::string job = SubmitAndPlan(spec);
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "x");
  for (int i = 0; i < 3; ++i) {
    lft::v1::CompleteTaskRequest r;
    r.set_worker_id(teacher);
    r.set_task_id(Acquire(teacher).task_id());
    r.set_pairs_written(5);
    ASSERT_TRUE(core_->CompleteTask(r).ok());
  }
  auto got = core_->GetJob(job);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state(), lft::v1::JOB_STATE_FAILED);
  EXPECT_THAT(got->error(),
              ::testing::HasSubstr("extraction produced 15 pair(s)"));
  EXPECT_THAT(got->error(),
              ::testing::HasSubstr("fewer than one global batch of 16"));
}

// Regression: a trainer group short of a rank waited forever with no word in
// the job status. Now the status names the missing rank after
// group_notice_ms, and group_deadline_ms fails the job.
TEST_F(CoordinatorTest, GroupShortOfARankIsReportedThenFailsAtDeadline) {
  group_notice_ms_ = 1000;
  group_deadline_ms_ = 3000;
  Reopen();
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_trainer_ranks(2);
  spec.mutable_training()->set_global_batch_sequences(16);
  const std::string job = SubmitAndPlan(spec);
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "x");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Complete(teacher, Acquire(teacher).task_id()).ok());
  }
  ASSERT_EQ(State(job), lft::v1::JOB_STATE_TRAINING);
  const std::string r0 = Register(lft::v1::WORKER_ROLE_TRAINER, "r0");
  const lft::v1::Task t0 = Acquire(r0);
  ASSERT_EQ(t0.training().rank(), 0u);
  lft::v1::RendezvousRequest rv;
  rv.set_worker_id(r0);
  rv.set_task_id(t0.task_id());
  rv.set_generation(1);
  rv.set_communicator_id("id-g1");
  EXPECT_THAT(core_->Rendezvous(rv, absl::Milliseconds(20)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "1 of 2"));
  auto advance = [&](int half_leases) {
    for (int i = 0; i < half_leases; ++i) {
      clock_.AdvanceMs(kLeaseMs / 2);
      lft::v1::HeartbeatRequest hb;
      hb.set_worker_id(r0);
      hb.add_task_ids(t0.task_id());
      ASSERT_TRUE(core_->Heartbeat(hb).ok());
      core_->Tick();
    }
  };
  advance(2);
  EXPECT_EQ(core_->GetJob(job)->waiting_reason(), "");
  advance(1);
  auto waiting = core_->GetJob(job);
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->state(), lft::v1::JOB_STATE_TRAINING);
  EXPECT_THAT(waiting->waiting_reason(),
              ::testing::HasSubstr("1 of 2 ranks joined; missing rank 1 (no "
                                   "trainer worker has taken it)"));
  advance(4);
  auto failed = core_->GetJob(job);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state(), lft::v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed->error(), ::testing::HasSubstr("missing rank 1"));
  EXPECT_THAT(failed->error(),
              ::testing::HasSubstr("--group-deadline-ms is 3000"));
}

}  // namespace
}  // namespace lft

namespace lft {
namespace {

// Sharding that blocks until released, as opening a FIFO does.
class BlockingSharding : public CorpusSharding {
 public:
  absl::StatusOr<std::vector<lft::v1::ExtractionTask>> Shard(
      const lft::v1::CorpusSpec&) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&released_));
    return std::vector<lft::v1::ExtractionTask>(1);
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }

 private:
  absl::Mutex mu_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
};

// Regression: a FIFO as a corpus path blocked the coordinator's scheduling
// thread in open(): other jobs stayed PENDING, leases stopped expiring and
// SIGTERM did nothing. Now planning runs apart and fails at its deadline.
TEST(CoordinatorPlanningTest, BlockedPlanningFailsAtDeadlineWhileTicksGoOn) {
  // Outlives the abandoned planning thread until Release() lets it return.
  static BlockingSharding* const sharding = new BlockingSharding();
  TempDir dir;
  FakeClock clock;
  CoordinatorOptions o;
  o.lease_duration_ms = 1000;
  o.planning_deadline_ms = 5000;
  o.check_inputs_at_submit = false;  // the spec names files that do not exist
  auto core =
      Coordinator::Open(dir.path() + "/db", o, &clock, sharding, nullptr);
  ASSERT_TRUE(core.ok()) << core.status();
  lft::v1::SubmitJobRequest submit;
  *submit.mutable_spec() = ValidSpec();
  auto job = (*core)->Submit(submit);
  ASSERT_TRUE(job.ok()) << job.status();
  lft::v1::RegisterRequest reg;
  reg.mutable_info()->set_role(lft::v1::WORKER_ROLE_TEACHER);
  reg.mutable_info()->set_hostname("w");
  ASSERT_TRUE((*core)->Register(reg).ok());

  const absl::Time start = absl::Now();
  (*core)->Tick();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2)) << "Tick blocked";
  EXPECT_EQ((*core)->GetJob(job->id())->state(), lft::v1::JOB_STATE_PENDING);
  // The round goes on while planning blocks: the silent worker is forgotten.
  clock.AdvanceMs(2000);
  (*core)->Tick();
  EXPECT_TRUE((*core)->Workers().empty());
  clock.AdvanceMs(4000);
  (*core)->Tick();
  auto failed = (*core)->GetJob(job->id());
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state(), lft::v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed->error(),
              HasSubstr("planning the corpus did not finish within 5000 ms"));
  (*core)->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  sharding->Release();
}

}  // namespace
}  // namespace lft
