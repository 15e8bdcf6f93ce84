// WorkerAgent + FakeTaskRunner against an in-process Coordinator (real
// clock, short leases): the whole control loop without gRPC.
#include "worker/agent/worker_agent.h"

#include <thread>

#include "coordinator/coordinator.h"
#include "tests/fakes/fake_task_runner.h"
#include "tests/fakes/in_process_control.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

class AgentFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorOptions o;
    o.check_inputs_at_submit = false;  // the spec names no real files
    o.heartbeat_interval_ms = 50;
    o.lease_duration_ms = 600;
    o.progress_event_interval_ms = 0;
    auto c =
        Coordinator::Open(dir_.path() + "/db", o, &clock_, &sharding_, nullptr);
    ASSERT_TRUE(c.ok()) << c.status();
    core_ = std::move(*c);
    core_->StartBackgroundLoop(absl::Milliseconds(20));
    control_ = std::make_unique<InProcessWorkerControl>(core_.get());
  }
  void TearDown() override {
    for (auto& a : agents_) a->Stop();
    for (auto& t : threads_) t.join();
    core_->Shutdown();
  }

  WorkerAgent* Start(lft::v1::WorkerRole role, const std::string& host,
                     FakeTaskRunnerOptions fo = {}) {
    runners_.push_back(std::make_unique<FakeTaskRunner>(fo));
    WorkerAgentOptions o;
    o.info.set_role(role);
    o.info.set_hostname(host);
    o.acquire_wait_ms = 50;
    o.progress_interval_ms = 10;
    o.coordinator_backoff = {absl::Milliseconds(20), absl::Milliseconds(40)};
    agents_.push_back(std::make_unique<WorkerAgent>(control_.get(),
                                                    runners_.back().get(), o));
    WorkerAgent* a = agents_.back().get();
    threads_.emplace_back([a] { EXPECT_TRUE(a->Run().ok()); });
    return a;
  }

  // Waits (bounded) until the job reaches `state`.
  bool WaitForState(const std::string& job, lft::v1::JobState state,
                    absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    while (absl::Now() < deadline) {
      if (core_->GetJob(job)->state() == state) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  std::string Submit(lft::v1::JobSpec spec) {
    lft::v1::SubmitJobRequest r;
    *r.mutable_spec() = spec;
    auto job = core_->Submit(r);
    EXPECT_TRUE(job.ok()) << job.status();
    return job->id();
  }

  TempDir dir_;
  RealClock clock_;
  FakeSharding sharding_{4, 10};
  std::unique_ptr<Coordinator> core_;
  std::unique_ptr<InProcessWorkerControl> control_;
  std::vector<std::unique_ptr<FakeTaskRunner>> runners_;
  std::vector<std::unique_ptr<WorkerAgent>> agents_;
  std::vector<std::thread> threads_;
};

TEST_F(AgentFixture, TwoTeachersTwoTrainersAndEvaluatorFinishJob) {
  FakeTaskRunnerOptions fast;
  fast.ms_per_document = 1;
  fast.ms_per_step = 1;
  fast.ms_per_sequence = 1;
  WorkerAgent* t1 = Start(lft::v1::WORKER_ROLE_TEACHER, "t1", fast);
  WorkerAgent* t2 = Start(lft::v1::WORKER_ROLE_TEACHER, "t2", fast);
  Start(lft::v1::WORKER_ROLE_TRAINER, "r1", fast);
  Start(lft::v1::WORKER_ROLE_TRAINER, "r2", fast);
  Start(lft::v1::WORKER_ROLE_EVALUATOR, "e", fast);
  lft::v1::JobSpec spec = ValidSpec();
  spec.mutable_training()->set_trainer_ranks(2);
  const std::string job = Submit(spec);
  ASSERT_TRUE(
      WaitForState(job, lft::v1::JOB_STATE_SUCCEEDED, absl::Seconds(20)))
      << lft::v1::JobState_Name(core_->GetJob(job)->state());
  EXPECT_EQ(t1->tasks_completed() + t2->tasks_completed(), 4u);
  auto j = core_->GetJob(job);
  EXPECT_EQ(j->latest_step(), 20u);
  for (const auto& p : j->progress()) {
    EXPECT_EQ(p.units_done(), p.units_total())
        << lft::v1::JobState_Name(p.phase());
  }
}

TEST_F(AgentFixture, CancelStopsRunningTaskWithinAHeartbeat) {
  FakeTaskRunnerOptions slow;
  slow.ms_per_document = 1000;
  WorkerAgent* t = Start(lft::v1::WORKER_ROLE_TEACHER, "t", slow);
  const std::string job = Submit(ValidSpec());
  ASSERT_TRUE(
      WaitForState(job, lft::v1::JOB_STATE_EXTRACTING, absl::Seconds(5)));
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (core_->TasksOfJob(job)[0].state() != lft::v1::TASK_STATE_LEASED &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const absl::Time cancelled_at = absl::Now();
  ASSERT_TRUE(core_->Cancel(job).ok());
  while (t->tasks_revoked() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(t->tasks_revoked(), 1u);
  EXPECT_LT(absl::Now() - cancelled_at, absl::Milliseconds(500));
}

TEST_F(AgentFixture, FailingRunnerExhaustsRetryBudget) {
  FakeTaskRunnerOptions broken;
  broken.fail_with = "teacher weights missing: /t/model.safetensors";
  Start(lft::v1::WORKER_ROLE_TEACHER, "t", broken);
  const std::string job = Submit(ValidSpec());
  ASSERT_TRUE(WaitForState(job, lft::v1::JOB_STATE_FAILED, absl::Seconds(10)));
  EXPECT_THAT(core_->GetJob(job)->error(),
              ::testing::HasSubstr("last error: teacher weights missing"));
}

// A trainer took global_batch_sequences 4294967295 and died with
// "terminate called after throwing an instance of 'std::bad_alloc'"; the
// job said the task "was lost". Now the task fails with the cause and the
// worker lives on.
TEST_F(AgentFixture, AllocationFailureFailsTheTaskNamingTheCause) {
  FakeTaskRunnerOptions oom;
  oom.throw_bad_alloc = true;
  WorkerAgent* t = Start(lft::v1::WORKER_ROLE_TEACHER, "t", oom);
  const std::string job = Submit(ValidSpec());
  ASSERT_TRUE(WaitForState(job, lft::v1::JOB_STATE_FAILED, absl::Seconds(10)));
  EXPECT_THAT(core_->GetJob(job)->error(),
              ::testing::HasSubstr("out of host memory (std::bad_alloc); "
                                   "lower training.global_batch_sequences"));
  EXPECT_GE(t->tasks_completed(), 1u);  // it reported, it did not die
}

}  // namespace
}  // namespace lft
