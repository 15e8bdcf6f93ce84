// lft-store: serves lft.v1.LatentStoreService and lft.v1.CheckpointService over
// a RocksDB directory.
//
//   lft-store --listen 127.0.0.1:0 --db /data/store --insecure-loopback
//   lft-store --listen 0.0.0.0:7071 --db /data/store --tls-cert store.pem
//       --tls-key store.key --token T [--metrics-port 9464]
//
// Security is the coordinator's (common/rpc/auth.h): TLS plus a bearer token,
// or plaintext with --insecure-loopback on a loopback address only (a token,
// if given, is still required). With port 0 the chosen port is printed on
// stdout as "listening on 127.0.0.1:NNNN" (tests read it). SIGINT/SIGTERM shut
// down gracefully (memtables flushed, no WAL left behind); a kill -9 loses
// nothing that SyncPairs made durable, nor, with --pairs-wal, anything
// acknowledged (docs/store.md, "Write path").
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/db_directory.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "common/base/prometheus_metrics.h"
#include "common/rpc/auth.h"
#include "common/rpc/channel.h"
#include "common/rpc/listen.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "latent-store/latent_store.h"
#include "latent-store/store_service.h"

namespace {

const std::vector<lft::FlagSpec>& StoreFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"listen", "HOST:PORT",
           "gRPC address (default 127.0.0.1:7071); port 0 picks a free port"},
          {"db", "DIR", "directory of the RocksDB store (required)"},
          {"tls-cert", "PEM", "certificate chain: serve TLS"},
          {"tls-key", "PEM", "private key of --tls-cert"},
          {"tls-ca", "PEM", "CA for client certificates (optional, with TLS)"},
          {"token", "TOKEN",
           "bearer token clients must send (default: env LFT_AUTH_TOKEN); "
           "required with TLS"},
          {"insecure-loopback", "",
           "plaintext, allowed only on a loopback --listen address"},
          {"metrics-port", "PORT",
           "port for GET /metrics on the --listen host; 0 picks one, -1 none "
           "(default)"},
          {"sync", "",
           "fsync the WAL on every acknowledged batch (default; --sync=false: "
           "not)"},
          {"wal", "",
           "write-ahead log for job configs and checkpoints (default; "
           "--wal=false: nothing is durable before a flush)"},
          {"min-free-disk-mib", "N",
           "refuse pair and checkpoint writes (RESOURCE_EXHAUSTED) while "
           "fewer than N MiB would stay free (default 2048: the memtables "
           "and a compaction must still fit)"},
          {"pairs-wal", "",
           "also log pair payloads in the WAL: acknowledged pairs survive a "
           "store kill without SyncPairs, at half the write bandwidth "
           "(default: off)"},
          {"payload-files", "",
           "write pair payloads once into payload files beside RocksDB "
           "(default; --payload-files=false: inside RocksDB, docs/store.md)"},
          {"payload-writeback-mib", "N",
           "ask the kernel to start writing a payload file back every N MiB "
           "written, so that the disk works while the teacher computes "
           "(default 32; 0: only at a task's sync)"},
          {"blob-files", "",
           "keep pair values held inside RocksDB in BlobDB blob files "
           "(default; --blob-files=false: not)"},
          {"max-message-mib", "N",
           "gRPC max message size, both ways (default 64)"},
          {"help", "", "print this text and exit"},
      };
  return *flags;
}

constexpr char kSynopsis[] = "lft-store --db DIR [--listen HOST:PORT] [flags]";

// One line on stderr, then the exit code.
int Fail(absl::string_view message, int code) {
  std::fprintf(stderr, "lft-store: %s\n", std::string(message).c_str());
  return code;
}

// A boolean flag: absent -> `def`, "--name" -> true, "--name=false" -> false
// (SimpleAtob spellings); InvalidArgument for another value.
absl::StatusOr<bool> GetBool(const lft::Flags& flags, const std::string& name,
                             bool def) {
  if (!flags.Has(name)) return def;
  bool value = false;
  if (!absl::SimpleAtob(flags.Get(name), &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flag --", name, ": \"", flags.Get(name), "\" is not true or false"));
  }
  return value;
}

int Run(const lft::Flags& flags) {
  const std::string db_path = flags.Get("db");
  if (db_path.empty())
    return Fail("--db DIR is required (the store's directory)", 2);
  absl::StatusOr<int64_t> max_mib_flag = flags.GetInt("max-message-mib", 64);
  absl::StatusOr<int64_t> metrics_port = flags.GetInt("metrics-port", -1);
  absl::StatusOr<int64_t> min_free_mib =
      flags.GetInt("min-free-disk-mib", 2048);
  absl::StatusOr<bool> sync = GetBool(flags, "sync", true);
  absl::StatusOr<bool> wal = GetBool(flags, "wal", true);
  absl::StatusOr<bool> blob_files = GetBool(flags, "blob-files", true);
  absl::StatusOr<bool> pairs_wal = GetBool(flags, "pairs-wal", false);
  absl::StatusOr<bool> payload_files = GetBool(flags, "payload-files", true);
  absl::StatusOr<int64_t> writeback_mib = flags.GetInt(
      "payload-writeback-mib",
      static_cast<int64_t>(
          lft::LatentStoreOptions().payload_bytes_per_writeback >> 20));
  for (const absl::Status& s :
       {max_mib_flag.status(), metrics_port.status(), min_free_mib.status(),
        sync.status(), wal.status(), blob_files.status(), pairs_wal.status(),
        payload_files.status(), writeback_mib.status()}) {
    if (!s.ok()) return Fail(s.message(), 2);
  }
  if (*writeback_mib < 0 || *writeback_mib > 65536) {
    return Fail(absl::StrCat("--payload-writeback-mib must be in 0..65536, "
                             "not ",
                             *writeback_mib),
                2);
  }
  if (*max_mib_flag < 1 || *max_mib_flag > 1024) {
    return Fail(absl::StrCat("--max-message-mib must be in 1..1024, not ",
                             *max_mib_flag),
                2);
  }
  const int max_mib = static_cast<int>(*max_mib_flag);
  const std::string listen = flags.Get("listen", "127.0.0.1:7071");
  lft::ServerSecurityOptions security;
  security.tls_cert_path = flags.Get("tls-cert");
  security.tls_key_path = flags.Get("tls-key");
  security.tls_ca_path = flags.Get("tls-ca");
  security.token = lft::TokenFromFlagOrEnv(flags.Get("token"));
  security.insecure_loopback = flags.Has("insecure-loopback");
  if (absl::Status s = lft::CheckDbDirectory(db_path, "--db"); !s.ok()) {
    return Fail(s.message(), 2);
  }
  auto credentials = lft::MakeServerCredentials(security, listen);
  if (!credentials.ok()) return Fail(credentials.status().message(), 2);
  // Refused before gRPC tries (and logs its own lines about it).
  if (absl::Status s = lft::CheckCanListen(listen, "--listen"); !s.ok()) {
    return Fail(s.message(), 1);
  }
  // Signals are taken by sigwait below; block them before threads start.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  lft::MetricsRegistry metrics;
  lft::LatentStoreOptions options;
  options.sync = *sync;
  options.disable_wal = !*wal;
  options.pairs_in_wal = *pairs_wal;
  options.payload_files = *payload_files;
  options.payload_bytes_per_writeback = static_cast<uint64_t>(*writeback_mib)
                                        << 20;
  options.enable_blob_files = *blob_files;
  options.metrics = &metrics;
  options.min_free_disk_bytes =
      static_cast<uint64_t>(std::max<int64_t>(0, *min_free_mib)) << 20;
  auto store = lft::LatentStore::Open(db_path, options);
  if (!store.ok()) {
    return Fail(absl::StrCat("cannot open the store --db ", db_path, ": ",
                             store.status().message()),
                1);
  }

  lft::StoreServiceOptions service_options;
  service_options.max_message_bytes = static_cast<uint64_t>(max_mib) << 20;
  service_options.auth_token = security.token;
  lft::StoreService service(store->get(), service_options);
  lft::StoreCheckpointService checkpoint_service(store->get(), security.token);
  grpc::ServerBuilder builder;
  int port = 0;
  lft::AddExclusiveListeningPort(&builder, listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(max_mib << 20);
  builder.SetMaxSendMessageSize(max_mib << 20);
  lft::ApplyBulkTransferSettings(&builder);
  builder.RegisterService(&service);
  builder.RegisterService(&checkpoint_service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(lft::ListenError(listen, "--listen").message(), 1);
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::unique_ptr<lft::MetricsHttpServer> http;
  if (*metrics_port >= 0) {
    auto started = lft::MetricsHttpServer::Start(
        host, static_cast<int>(*metrics_port), &metrics);
    if (!started.ok()) {
      server->Shutdown();
      return Fail(absl::StrCat("cannot serve /metrics (--metrics-port): ",
                               started.status().message()),
                  1);
    }
    http = *std::move(started);
    std::printf("metrics on %s:%d\n", host.c_str(), http->port());
  }
  std::printf("listening on %s:%d\n", host.c_str(), port);
  std::fflush(stdout);
  lft::LogInfo("lft-store serving",
               {{"address", absl::StrCat(host, ":", port)},
                {"db", db_path},
                {"tls", security.insecure_loopback ? "off" : "on"},
                {"auth", security.token.empty() ? "none" : "bearer"}});

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  lft::LogInfo("shutting down", {{"signal", signal_number}});
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  lft::SetLogComponent("store");
  absl::StatusOr<lft::Flags> flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), StoreFlags());
  if (!flags.ok()) {
    std::fprintf(stderr, "lft-store: %s\n\n%s",
                 std::string(flags.status().message()).c_str(),
                 lft::Flags::Usage(kSynopsis, StoreFlags()).c_str());
    return 2;
  }
  if (flags->Has("help")) {
    std::printf("%s", lft::Flags::Usage(kSynopsis, StoreFlags()).c_str());
    return 0;
  }
  return Run(*flags);
}
