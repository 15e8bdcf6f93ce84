// lft-fake-worker: a worker process with a FakeTaskRunner. It speaks the
// real WorkerService protocol (registration, heartbeats, leases, rendezvous)
// but writes nothing; the coordinator's integration tests run it.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "tests/fakes/fake_task_runner.h"
#include "worker/agent/worker_process.h"

namespace {

constexpr char kUsage[] =
    R"(usage: lft-fake-worker --role teacher|trainer|evaluator [flags]

  --coordinator HOST:PORT   (default 127.0.0.1:7070)
  --token TOKEN             bearer token (or env LFT_AUTH_TOKEN)
  --tls-ca PEM              CA of the coordinator's certificate
  --name NAME               hostname reported at Register (default host-pid)
  --ms-per-document N       extraction speed (default 2)
  --ms-per-step N           training speed (default 5)
  --ms-per-sequence N       evaluation speed (default 5)
  --crash-after N           SIGKILL itself after N units of a task (default off)
  --fail-with MSG           fail every task with MSG
  --record FILE             append "<task id> <shard index>" per accepted completion
)";

}  // namespace

int main(int argc, char** argv) {
  lft::SetLogComponent("fake-worker");
  const sigset_t stop = lft::BlockStopSignals();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = lft::Flags::Parse(
      args,
      {"role", "coordinator", "token", "tls-ca", "name", "ms-per-document",
       "ms-per-step", "ms-per-sequence", "crash-after", "fail-with", "record"},
      {"help"});
  if (!flags.ok() || flags->Has("help")) {
    if (!flags.ok())
      std::fprintf(stderr, "%s\n",
                   std::string(flags.status().message()).c_str());
    std::fputs(kUsage, flags.ok() ? stdout : stderr);
    return flags.ok() ? 0 : 2;
  }
  lft::WorkerAgentOptions o;
  const std::string role = flags->Get("role");
  if (role == "teacher") {
    o.info.set_role(lft::v1::WORKER_ROLE_TEACHER);
  } else if (role == "trainer") {
    o.info.set_role(lft::v1::WORKER_ROLE_TRAINER);
  } else if (role == "evaluator") {
    o.info.set_role(lft::v1::WORKER_ROLE_EVALUATOR);
  } else {
    std::fprintf(stderr,
                 "--role: \"%s\" is not teacher, trainer or evaluator\n%s",
                 role.c_str(), kUsage);
    return 2;
  }
  o.info.set_hostname(flags->Get("name", lft::DefaultWorkerName()));
  o.info.set_device("cpu");
  o.info.set_version("fake");

  lft::FakeTaskRunnerOptions fo;
  auto get = [&](const char* name, int64_t def) {
    auto v = flags->GetInt(name, def);
    return v.ok() ? *v : def;
  };
  fo.ms_per_document = get("ms-per-document", fo.ms_per_document);
  fo.ms_per_step = get("ms-per-step", fo.ms_per_step);
  fo.ms_per_sequence = get("ms-per-sequence", fo.ms_per_sequence);
  fo.crash_after_units = static_cast<uint64_t>(get("crash-after", 0));
  fo.on_crash = [] { raise(SIGKILL); };
  fo.fail_with = flags->Get("fail-with");

  const std::string record = flags->Get("record");
  if (!record.empty()) {
    o.on_completed = [record](const lft::v1::Task& task, bool ok) {
      if (!ok) return;
      // One short O_APPEND write per line: lines from several workers do not
      // interleave.
      const std::string line = absl::StrCat(
          task.task_id(), " ",
          task.has_extraction() ? task.extraction().shard_index() : 0, "\n");
      const int fd = open(record.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        (void)!write(fd, line.data(), line.size());
        close(fd);
      }
    };
  }
  lft::FakeTaskRunner runner(fo);
  return lft::RunWorkerProcess("lft-fake-worker", *flags, stop, &runner, o);
}
