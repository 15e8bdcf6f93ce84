// Durable first: every Coordinator transition writes one StateStore batch
// before it changes memory. With a write hook that fails, each call returns
// the store's error and leaves memory unchanged, and after every step the
// state reloaded from disk equals the state in memory.
#include <string>
#include <vector>

#include "common/base/status.h"
#include "coordinator/coordinator.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/unit/coordinator/coordinator_fixture.h"

namespace lft {
namespace {

using ::google::protobuf::util::MessageDifferencer;

// What a client can observe of the coordinator, minus the soft state that is
// rebuilt on Open (lease expiry, when a worker was last seen) and what is
// computed from the clock at the call (progress rates).
struct Snapshot {
  std::vector<lft::v1::Job> jobs;
  std::vector<lft::v1::TaskRecord> tasks;
  std::vector<lft::v1::WorkerRecord> workers;
  std::vector<lft::v1::JobEvent> events;
};

template <typename T>
bool SameMessages(const std::vector<T>& a, const std::vector<T>& b,
                  std::string* why) {
  if (a.size() != b.size()) {
    *why = absl::StrCat("sizes ", a.size(), " vs ", b.size());
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (!MessageDifferencer::Equals(a[i], b[i])) {
      *why = absl::StrCat(a[i].DebugString(), "\n  vs\n", b[i].DebugString());
      return false;
    }
  }
  return true;
}

class CoordinatorDurabilityTest : public CoordinatorTest {
 protected:
  Snapshot Take() {
    Snapshot s;
    auto list = core_->ListJobs({});
    EXPECT_TRUE(list.ok()) << list.status();
    for (lft::v1::Job job : list->jobs()) {
      // Rates and ETAs are computed from the clock at the call.
      for (lft::v1::PhaseProgress& p : *job.mutable_progress()) {
        p.clear_units_per_second();
        p.clear_eta_seconds();
      }
      s.jobs.push_back(job);
      for (lft::v1::TaskRecord t : core_->TasksOfJob(job.id())) {
        t.mutable_task()->clear_lease_expiry_unix_ms();
        s.tasks.push_back(t);
      }
      bool finished = false;
      auto events =
          core_->WaitForEvents(job.id(), 0, absl::ZeroDuration(), &finished);
      EXPECT_TRUE(events.ok()) << events.status();
      s.events.insert(s.events.end(), events->begin(), events->end());
    }
    for (lft::v1::WorkerRecord w : core_->Workers()) {
      w.clear_last_seen_unix_ms();
      s.workers.push_back(w);
    }
    return s;
  }

  void ExpectSame(const Snapshot& a, const Snapshot& b,
                  const std::string& when) {
    std::string why;
    EXPECT_TRUE(SameMessages(a.jobs, b.jobs, &why)) << when << ": jobs " << why;
    EXPECT_TRUE(SameMessages(a.tasks, b.tasks, &why))
        << when << ": tasks " << why;
    EXPECT_TRUE(SameMessages(a.workers, b.workers, &why))
        << when << ": workers " << why;
    EXPECT_TRUE(SameMessages(a.events, b.events, &why))
        << when << ": events " << why;
  }

  void FailWrites(bool fail) {
    core_->state_store_for_testing()->SetWriteHookForTesting(
        fail ? StateStore::WriteHook(
                   [](const std::vector<StateStore::Mutation>&) {
                     return absl::InternalError("injected write failure");
                   })
             : StateStore::WriteHook());
  }

  // Runs `step` once with failing writes (it must report the error, or for
  // Tick change nothing) and once for real; after each, memory must equal
  // what a reopened coordinator reads from disk.
  void Step(const std::string& name,
            const std::function<absl::Status()>& step) {
    const Snapshot before = Take();
    FailWrites(true);
    const absl::Status failed = step();
    FailWrites(false);
    if (!failed.ok()) {
      EXPECT_THAT(failed, StatusIs(absl::StatusCode::kInternal,
                                   "injected write failure"))
          << name;
    }
    ExpectSame(before, Take(), name + " (failed write, memory)");
    Reopen();
    ExpectSame(before, Take(), name + " (failed write, disk)");

    EXPECT_TRUE(step().ok()) << name;
    const Snapshot after = Take();
    Reopen();
    ExpectSame(after, Take(), name + " (memory vs disk)");
  }

  absl::StatusOr<lft::v1::Task> AcquireOr(const std::string& worker) {
    lft::v1::AcquireTaskRequest r;
    r.set_worker_id(worker);
    LFT_ASSIGN_OR_RETURN(lft::v1::AcquireTaskResponse resp,
                         core_->AcquireTask(r));
    return resp.task();
  }

  std::string WorkerId(lft::v1::WorkerRole role) {
    for (const auto& w : core_->Workers()) {
      if (w.info().role() == role) return w.worker_id();
    }
    return "";
  }

};

template <typename T>
absl::Status Ok(const absl::StatusOr<T>& s) {
  return s.status();
}

TEST_F(CoordinatorDurabilityTest,
       FailedWritesChangeNothingAndMemoryMatchesDisk) {
  Step("register teacher", [&] {
    lft::v1::RegisterRequest r;
    r.mutable_info()->set_role(lft::v1::WORKER_ROLE_TEACHER);
    r.mutable_info()->set_hostname("t");
    return Ok(core_->Register(r));
  });
  Step("register trainer", [&] {
    lft::v1::RegisterRequest r;
    r.mutable_info()->set_role(lft::v1::WORKER_ROLE_TRAINER);
    r.mutable_info()->set_hostname("r");
    return Ok(core_->Register(r));
  });
  Step("submit", [&] {
    lft::v1::SubmitJobRequest r;
    *r.mutable_spec() = ValidSpec();
    r.set_request_id("once");
    return Ok(core_->Submit(r));
  });
  const std::string job = core_->ListJobs({})->jobs(0).id();
  // Tick reports nothing; with a failing write the job stays PENDING.
  Step("plan", [&] {
    core_->Tick();
    return absl::OkStatus();
  });
  EXPECT_EQ(core_->GetJob(job)->state(), lft::v1::JOB_STATE_EXTRACTING);

  const std::string teacher = WorkerId(lft::v1::WORKER_ROLE_TEACHER);
  std::string task;
  Step("acquire", [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(lft::v1::Task t, AcquireOr(teacher));
    task = t.task_id();
    return absl::OkStatus();
  });
  ASSERT_FALSE(task.empty());
  Step("progress", [&] {
    clock_.AdvanceMs(100);
    lft::v1::ReportProgressRequest p;
    p.set_worker_id(teacher);
    p.set_task_id(task);
    p.set_tokens_done(100);
    p.set_documents_done(2);
    return Ok(core_->ReportProgress(p));
  });
  Step("complete with error (requeue)", [&] {
    lft::v1::CompleteTaskRequest r;
    r.set_worker_id(teacher);
    r.set_task_id(task);
    r.set_error("disk full");
    return Ok(core_->CompleteTask(r));
  });
  // All three shards succeed: the job moves to TRAINING.
  for (int i = 0; i < 3; ++i) {
    auto t = AcquireOr(teacher);
    ASSERT_TRUE(t.ok()) << t.status();
    const std::string leased = t->task_id();
    Step("complete", [&] {
      lft::v1::CompleteTaskRequest r;
      r.set_worker_id(teacher);
      r.set_task_id(leased);
      r.set_pairs_written(10);
      return Ok(core_->CompleteTask(r));
    });
  }
  EXPECT_EQ(core_->GetJob(job)->state(), lft::v1::JOB_STATE_TRAINING);

  // A trainer leases its rank and goes silent: Tick forgets it and requeues
  // the rank (re-forming the group) only if the write succeeds.
  const std::string trainer = WorkerId(lft::v1::WORKER_ROLE_TRAINER);
  ASSERT_TRUE(AcquireOr(trainer).ok());
  Step("expire leases", [&] {
    clock_.AdvanceMs(5000);
    core_->Tick();
    return absl::OkStatus();
  });
  EXPECT_TRUE(core_->Workers().empty());

  Step("cancel", [&] { return Ok(core_->Cancel(job)); });
  EXPECT_EQ(core_->GetJob(job)->state(), lft::v1::JOB_STATE_CANCELLED);
}

}  // namespace
}  // namespace lft
