#include "worker/agent/worker_process.h"

#include <unistd.h>

#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/rpc/auth.h"
#include "worker/agent/grpc_worker_control.h"

namespace lft {

sigset_t BlockStopSignals() {
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  return stop;
}

std::string DefaultWorkerName() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

int RunWorkerProcess(const std::string& program, const Flags& flags,
                     const sigset_t& stop, TaskRunner* runner,
                     const WorkerAgentOptions& options) {
  const std::string target = flags.Get("coordinator", "127.0.0.1:7070");
  ClientSecurityOptions cs;
  cs.tls_ca_path = flags.Get("tls-ca");
  cs.insecure = flags.Has("insecure-loopback");
  auto creds = MakeChannelCredentials(cs, target);
  if (!creds.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(),
                 std::string(creds.status().message()).c_str());
    return 2;
  }
  GrpcWorkerControl control(MakeCoordinatorChannel(target, *creds),
                            TokenFromFlagOrEnv(flags.Get("token")));
  WorkerAgent agent(&control, runner, options);
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop, &sig);
    agent.Stop();
  });
  absl::Status s = agent.Run();
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(),
                 std::string(s.message()).c_str());
  }
  // Unblock the waiter when the agent stopped by itself (error, or
  // --max-tasks); after a signal the extra SIGTERM stays pending, blocked.
  kill(getpid(), SIGTERM);
  waiter.join();
  return s.ok() ? 0 : 4;
}

}  // namespace lft
