// The Coordinator under a fake clock and fake sharding (3 shards of 10
// documents), reopened from its RocksDB directory at will; shared by the
// coordinator's unit tests.
#ifndef LFT_TESTS_UNIT_COORDINATOR_COORDINATOR_FIXTURE_H_
#define LFT_TESTS_UNIT_COORDINATOR_COORDINATOR_FIXTURE_H_

#include <memory>
#include <string>

#include "common/base/prometheus_metrics.h"
#include "coordinator/clock.h"
#include "coordinator/coordinator.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {

inline constexpr int64_t kLeaseMs = 1000;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen() {
    core_.reset();
    CoordinatorOptions o;
    o.heartbeat_interval_ms = 100;
    o.lease_duration_ms = kLeaseMs;
    o.max_task_attempts = 3;
    o.progress_event_interval_ms = 0;
    // The specs name files that do not exist; the file checks have tests of
    // their own (job_inputs_test.cc, coordinator_test.cc).
    o.check_inputs_at_submit = check_inputs_;
    o.latent_store = latent_store_;
    o.store_address = store_address_;
    o.pair_retention_ms = pair_retention_ms_;
    o.group_notice_ms = group_notice_ms_;
    o.group_deadline_ms = group_deadline_ms_;
    auto c = Coordinator::Open(dir_.path() + "/db", o, &clock_, &sharding_,
                               &metrics_);
    ASSERT_TRUE(c.ok()) << c.status();
    core_ = std::move(*c);
  }

  std::string Register(lft::v1::WorkerRole role, const std::string& host) {
    lft::v1::RegisterRequest r;
    r.mutable_info()->set_role(role);
    r.mutable_info()->set_hostname(host);
    auto resp = core_->Register(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->worker_id() : "";
  }

  lft::v1::Task Acquire(const std::string& worker) {
    lft::v1::AcquireTaskRequest r;
    r.set_worker_id(worker);
    auto resp = core_->AcquireTask(r);
    EXPECT_TRUE(resp.ok()) << resp.status();
    return resp.ok() ? resp->task() : lft::v1::Task();
  }

  absl::Status Complete(const std::string& worker, const std::string& task,
                        const std::string& error = "",
                        const std::string& checkpoint = "") {
    lft::v1::CompleteTaskRequest r;
    r.set_worker_id(worker);
    r.set_task_id(task);
    r.set_error(error);
    r.set_checkpoint(checkpoint);
    return core_->CompleteTask(r).status();
  }

  std::string SubmitAndPlan(lft::v1::JobSpec spec = ValidSpec()) {
    lft::v1::SubmitJobRequest r;
    *r.mutable_spec() = spec;
    auto job = core_->Submit(r);
    EXPECT_TRUE(job.ok()) << job.status();
    EXPECT_EQ(job->state(), lft::v1::JOB_STATE_PENDING);
    core_->Tick();
    return job->id();
  }

  lft::v1::JobState State(const std::string& job) {
    return core_->GetJob(job)->state();
  }

  bool check_inputs_ = false;
  PairStore* latent_store_ = nullptr;
  std::string store_address_;
  int64_t pair_retention_ms_ = 0;
  // Options a test may change before calling Reopen().
  int64_t group_notice_ms_ = 10000;
  int64_t group_deadline_ms_ = 0;
  TempDir dir_;
  FakeClock clock_;
  FakeSharding sharding_{3, 10};
  MetricsRegistry metrics_;
  std::unique_ptr<Coordinator> core_;
};

}  // namespace lft

#endif  // LFT_TESTS_UNIT_COORDINATOR_COORDINATOR_FIXTURE_H_
