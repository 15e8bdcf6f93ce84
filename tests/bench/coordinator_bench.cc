// Coordinator scheduling overhead: how many tasks per second the core can
// lease and complete (every change persisted to RocksDB), in process and
// over gRPC on loopback, and how long a restart takes to reload the state.
// Prints a table; never passes or fails on time.
//
//   build/tests/bench/coordinator_bench [tasks...]   (default 2000 20000)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "common/base/log.h"
#include "coordinator/coordinator.h"
#include "coordinator/server.h"
#include "tests/fakes/in_process_control.h"
#include "tests/unit/coordinator/test_util.h"
#include "worker/agent/grpc_worker_control.h"

namespace lft {
namespace {

struct Row {
  std::string what;
  uint64_t tasks;
  double seconds;
};

// Leases and completes every extraction task of one job through `control`.
double Drain(WorkerControl* control, uint64_t tasks) {
  lft::v1::RegisterRequest reg;
  reg.mutable_info()->set_role(lft::v1::WORKER_ROLE_TEACHER);
  reg.mutable_info()->set_hostname("bench");
  const std::string id = control->Register(reg)->worker_id();
  const absl::Time start = absl::Now();
  for (uint64_t i = 0; i < tasks; ++i) {
    lft::v1::AcquireTaskRequest a;
    a.set_worker_id(id);
    auto t = control->AcquireTask(a);
    if (!t.ok() || !t->has_task()) {
      std::fprintf(stderr, "acquire failed at %lu\n",
                   static_cast<unsigned long>(i));
      break;
    }
    lft::v1::ReportProgressRequest p;
    p.set_worker_id(id);
    p.set_task_id(t->task().task_id());
    p.set_tokens_done(1000);
    (void)control->ReportProgress(p);
    lft::v1::CompleteTaskRequest c;
    c.set_worker_id(id);
    c.set_task_id(t->task().task_id());
    (void)control->CompleteTask(c);
  }
  return absl::ToDoubleSeconds(absl::Now() - start);
}

std::string SubmitAndPlan(Coordinator* core) {
  lft::v1::SubmitJobRequest r;
  *r.mutable_spec() = ValidSpec();
  std::string id = core->Submit(r)->id();
  core->Tick();
  return id;
}

}  // namespace
}  // namespace lft

int main(int argc, char** argv) {
  using namespace lft;
  SetLogLevel(LogLevel::kWarning);
  std::vector<uint64_t> sizes = {2000, 20000};
  if (argc > 1) {
    sizes.clear();
    for (int i = 1; i < argc; ++i) {
      uint64_t n = 0;
      if (absl::SimpleAtoi(argv[i], &n)) sizes.push_back(n);
    }
  }
  std::vector<Row> rows;
  for (uint64_t n : sizes) {
    {
      TempDir dir;
      RealClock clock;
      FakeSharding sharding(static_cast<int>(n), 10);
      CoordinatorOptions o;
      o.check_inputs_at_submit = false;
      auto core =
          *Coordinator::Open(dir.path() + "/db", o, &clock, &sharding, nullptr);
      absl::Time t0 = absl::Now();
      SubmitAndPlan(core.get());
      rows.push_back({"submit + shard + persist", n,
                      absl::ToDoubleSeconds(absl::Now() - t0)});
      InProcessWorkerControl control(core.get());
      rows.push_back(
          {"lease+progress+complete, in process", n, Drain(&control, n)});
      core.reset();
      t0 = absl::Now();
      core =
          *Coordinator::Open(dir.path() + "/db", o, &clock, &sharding, nullptr);
      rows.push_back({"restart: reload state", n,
                      absl::ToDoubleSeconds(absl::Now() - t0)});
    }
    if (n <= 5000) {
      TempDir dir;
      ServerOptions so;
      so.listen_address = "127.0.0.1:0";
      so.db_path = dir.path() + "/db";
      so.security.insecure_loopback = true;
      // Plan the job with a fake sharder, then serve the same state.
      RealClock clock;
      FakeSharding sharding(static_cast<int>(n), 10);
      CoordinatorOptions o;
      o.check_inputs_at_submit = false;
      auto core = *Coordinator::Open(so.db_path, o, &clock, &sharding, nullptr);
      SubmitAndPlan(core.get());
      core.reset();
      auto served = *CoordinatorServer::Start(so);
      const std::string target = "127.0.0.1:" + std::to_string(served->port());
      GrpcWorkerControl control(
          grpc::CreateChannel(target, grpc::InsecureChannelCredentials()), "");
      rows.push_back(
          {"lease+progress+complete, gRPC loopback", n, Drain(&control, n)});
      served->Shutdown(absl::Seconds(1));
    }
  }
  std::printf("%-42s %8s %10s %12s\n", "operation", "tasks", "seconds",
              "tasks/s");
  for (const Row& r : rows) {
    std::printf("%-42s %8lu %10.3f %12.0f\n", r.what.c_str(),
                static_cast<unsigned long>(r.tasks), r.seconds,
                r.tasks / r.seconds);
  }
  return 0;
}
