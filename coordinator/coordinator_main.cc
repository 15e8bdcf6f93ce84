// lft-coordinator: serves JobService and WorkerService (docs/api.md).
// Operations: docs/operations.md, "Coordinator".
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "common/rpc/auth.h"
#include "coordinator/server.h"

namespace {

const std::vector<lft::FlagSpec>& CoordinatorFlags() {
  static const std::vector<lft::FlagSpec>* flags = new std::vector<
      lft::FlagSpec>{
      {"listen", "HOST:PORT",
       "gRPC address (default 127.0.0.1:7070; port 0 picks one); a port in "
       "use is refused"},
      {"db", "DIR", "RocksDB directory for jobs, tasks, workers, events"},
      {"tls-cert", "PEM", "certificate chain: serve TLS (needs a token)"},
      {"tls-key", "PEM", "private key of --tls-cert"},
      {"tls-ca", "PEM", "CA for client certificates (optional, with TLS)"},
      {"token", "TOKEN",
       "bearer token clients must send (default: env LFT_AUTH_TOKEN)"},
      {"insecure-loopback", "",
       "plaintext, only on a loopback address (local runs, tests)"},
      {"metrics-port", "N",
       "serve Prometheus /metrics on N (0 picks one; default off)"},
      {"metrics-host", "HOST",
       "address for /metrics (default 127.0.0.1; 0.0.0.0 for a scraper on "
       "another host)"},
      {"heartbeat-interval-ms", "N",
       "workers heartbeat this often (default "
       "2000)"},
      {"lease-ms", "N", "lease length and worker timeout (default 10000)"},
      {"max-task-attempts", "N",
       "tries per task before the job fails (default 4)"},
      {"planning-deadline-ms", "N",
       "fail a job whose corpus planning (opening and counting its files) "
       "takes longer (default 600000; 0 = no deadline)"},
      {"group-notice-ms", "N",
       "report a trainer group short of ranks in the job status after N ms "
       "(default 10000)"},
      {"group-deadline-ms", "N",
       "fail a job whose trainer group has not formed within N ms (default "
       "0 = wait forever)"},
      {"store-address", "ADDR",
       "latent store handed to workers (\"a,b\": sharded); the coordinator "
       "registers, retains and deletes each job's data there and "
       "CheckpointService reads checkpoints from it (default: none, workers "
       "embed stores)"},
      {"store-token", "TOKEN",
       "bearer token for --store-address (default: the --token)"},
      {"store-tls-ca", "PEM",
       "CA of the store's certificate (default: plaintext to loopback, the "
       "system's roots otherwise)"},
      {"pair-retention-s", "N",
       "delete a job's pairs N s after it ended; checkpoints and reports "
       "stay until lftctl delete (default 86400; 0 keeps pairs until lftctl "
       "delete)"},
      {"skip-input-checks", "",
       "do not check the teacher, corpus and held-out files at submit (only "
       "where this host cannot see them)"},
      {"port-file", "PATH",
       "write the bound gRPC port (and metrics port) here"},
      {"tick-ms", "N", "period of the lease reaper and planner (default 200)"},
      {"min-free-disk-mib", "N",
       "refuse state writes (RESOURCE_EXHAUSTED naming --db) while fewer "
       "than N MiB would stay free there (default 256)"},
      {"help", "", "print this text and exit"},
  };
  return *flags;
}

constexpr char kSynopsis[] = "lft-coordinator --db DIR [flags]";

int Fail(const absl::Status& s, int code) {
  std::fprintf(stderr, "lft-coordinator: %s\n",
               std::string(s.message()).c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  lft::SetLogComponent("coordinator");
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = lft::Flags::Parse(args, CoordinatorFlags());
  if (!flags.ok()) {
    std::fprintf(stderr, "lft-coordinator: %s\n\n%s",
                 std::string(flags.status().message()).c_str(),
                 lft::Flags::Usage(kSynopsis, CoordinatorFlags()).c_str());
    return 2;
  }
  if (flags->Has("help")) {
    std::fputs(lft::Flags::Usage(kSynopsis, CoordinatorFlags()).c_str(),
               stdout);
    return 0;
  }
  lft::ServerOptions o;
  o.listen_address = flags->Get("listen", o.listen_address);
  o.db_path = flags->Get("db");
  o.security.tls_cert_path = flags->Get("tls-cert");
  o.security.tls_key_path = flags->Get("tls-key");
  o.security.tls_ca_path = flags->Get("tls-ca");
  o.security.token = lft::TokenFromFlagOrEnv(flags->Get("token"));
  o.security.insecure_loopback = flags->Has("insecure-loopback");
  o.metrics_host = flags->Get("metrics-host", o.metrics_host);
  o.coordinator.store_address = flags->Get("store-address");
  o.store_credentials.token =
      flags->Has("store-token") ? flags->Get("store-token") : o.security.token;
  o.store_credentials.tls_ca_path = flags->Get("store-tls-ca");
  o.coordinator.check_inputs_at_submit = !flags->Has("skip-input-checks");
  auto min_free = flags->GetInt(
      "min-free-disk-mib",
      static_cast<int64_t>(o.coordinator.min_free_disk_bytes >> 20));
  if (!min_free.ok()) return Fail(min_free.status(), 2);
  if (*min_free < 0)
    return Fail(absl::InvalidArgumentError("--min-free-disk-mib must be >= 0"),
                2);
  o.coordinator.min_free_disk_bytes = static_cast<uint64_t>(*min_free) << 20;
  auto retention =
      flags->GetInt("pair-retention-s", o.coordinator.pair_retention_ms / 1000);
  if (!retention.ok()) return Fail(retention.status(), 2);
  o.coordinator.pair_retention_ms = *retention * 1000;
  for (auto [name, target] : std::vector<std::pair<const char*, int64_t*>>{
           {"heartbeat-interval-ms", &o.coordinator.heartbeat_interval_ms},
           {"lease-ms", &o.coordinator.lease_duration_ms},
           {"tick-ms", &o.tick_ms},
           {"group-notice-ms", &o.coordinator.group_notice_ms},
           {"group-deadline-ms", &o.coordinator.group_deadline_ms},
           {"planning-deadline-ms", &o.coordinator.planning_deadline_ms}}) {
    auto v = flags->GetInt(name, *target);
    if (!v.ok()) return Fail(v.status(), 2);
    *target = *v;
  }
  auto metrics_port = flags->GetInt("metrics-port", -1);
  if (!metrics_port.ok()) return Fail(metrics_port.status(), 2);
  o.metrics_port = static_cast<int>(*metrics_port);
  auto attempts =
      flags->GetInt("max-task-attempts", o.coordinator.max_task_attempts);
  if (!attempts.ok()) return Fail(attempts.status(), 2);
  o.coordinator.max_task_attempts = static_cast<uint32_t>(*attempts);

  // Block the stop signals before any thread starts, then wait for them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto server = lft::CoordinatorServer::Start(o);
  if (!server.ok()) {
    return Fail(
        server.status(),
        server.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1);
  }
  const std::string port_file = flags->Get("port-file");
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    {
      std::ofstream out(tmp);
      out << (*server)->port() << " " << (*server)->metrics_port() << "\n";
    }
    std::rename(tmp.c_str(), port_file.c_str());
  }
  int sig = 0;
  sigwait(&stop, &sig);
  lft::LogInfo("coordinator stopping", {{"signal", sig}});
  (*server)->Shutdown(absl::Seconds(2));
  return 0;
}
