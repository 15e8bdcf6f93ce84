// lft-store: serves lft.v1.LatentStoreService over a RocksDB directory.
//
//   lft-store --listen 127.0.0.1:0 --db /data/store --insecure-loopback
//   lft-store --listen 0.0.0.0:7071 --db /data/store --tls-cert store.pem
//       --tls-key store.key --token T [--metrics-port 9464]
//
// Security is the coordinator's (common/auth.h): TLS plus a bearer token,
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

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "common/auth.h"
#include "common/log.h"
#include "common/metrics.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "latent-store/latent_store.h"
#include "latent-store/store_service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7071",
          "host:port for gRPC; port 0 picks a free port");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA for client certificates (optional, with TLS)");
ABSL_FLAG(std::string, token, "",
          "bearer token clients must send (default: env LFT_AUTH_TOKEN); "
          "required with TLS");
ABSL_FLAG(bool, insecure_loopback, false,
          "plaintext, allowed only on a loopback --listen address");
ABSL_FLAG(std::string, db, "", "directory of the RocksDB store (required)");
ABSL_FLAG(int, metrics_port, -1,
          "port for GET /metrics on the --listen host; 0 picks one, -1 none");
ABSL_FLAG(bool, sync, true, "fsync the WAL on every acknowledged batch");
ABSL_FLAG(bool, wal, true,
          "write-ahead log for job configs and checkpoints (off: nothing is "
          "durable before a flush)");
ABSL_FLAG(bool, pairs_wal, false,
          "also log pair payloads in the WAL: acknowledged pairs survive a "
          "store kill without SyncPairs, at half the write bandwidth");
ABSL_FLAG(bool, blob_files, true, "keep pair values in BlobDB blob files");
ABSL_FLAG(int, max_message_mib, 64, "gRPC max message size (both ways)");

namespace {

int Run() {
  const std::string db_path = absl::GetFlag(FLAGS_db);
  if (db_path.empty()) {
    lft::LogError("--db is required (the store's directory)");
    return 2;
  }
  const int max_mib = absl::GetFlag(FLAGS_max_message_mib);
  if (max_mib < 1 || max_mib > 1024) {
    lft::LogError("--max_message_mib must be in 1..1024", {{"got", max_mib}});
    return 2;
  }
  const std::string listen = absl::GetFlag(FLAGS_listen);
  lft::ServerSecurityOptions security;
  security.tls_cert_path = absl::GetFlag(FLAGS_tls_cert);
  security.tls_key_path = absl::GetFlag(FLAGS_tls_key);
  security.tls_ca_path = absl::GetFlag(FLAGS_tls_ca);
  security.token = lft::TokenFromFlagOrEnv(absl::GetFlag(FLAGS_token));
  security.insecure_loopback = absl::GetFlag(FLAGS_insecure_loopback);
  auto credentials = lft::MakeServerCredentials(security, listen);
  if (!credentials.ok()) {
    std::fprintf(stderr, "lft-store: %s\n",
                 std::string(credentials.status().message()).c_str());
    return 2;
  }
  // Signals are taken by sigwait below; block them before threads start.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  lft::MetricsRegistry metrics;
  lft::LatentStoreOptions options;
  options.sync = absl::GetFlag(FLAGS_sync);
  options.disable_wal = !absl::GetFlag(FLAGS_wal);
  options.pairs_in_wal = absl::GetFlag(FLAGS_pairs_wal);
  options.enable_blob_files = absl::GetFlag(FLAGS_blob_files);
  options.metrics = &metrics;
  auto store = lft::LatentStore::Open(db_path, options);
  if (!store.ok()) {
    lft::LogError("cannot open store", {{"error", store.status().ToString()}});
    return 1;
  }

  lft::StoreServiceOptions service_options;
  service_options.max_message_bytes = static_cast<uint64_t>(max_mib) << 20;
  service_options.auth_token = security.token;
  lft::StoreService service(store->get(), service_options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, *credentials, &port);
  builder.SetMaxReceiveMessageSize(max_mib << 20);
  builder.SetMaxSendMessageSize(max_mib << 20);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    lft::LogError("cannot listen", {{"address", listen}});
    return 1;
  }
  const std::string host = listen.substr(0, listen.rfind(':'));
  std::unique_ptr<lft::MetricsHttpServer> http;
  if (absl::GetFlag(FLAGS_metrics_port) >= 0) {
    auto started = lft::MetricsHttpServer::Start(
        host, absl::GetFlag(FLAGS_metrics_port), &metrics);
    if (!started.ok()) {
      lft::LogError("cannot serve /metrics",
                    {{"error", started.status().ToString()}});
      return 1;
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
  // Accept --metrics-port as well as --metrics_port (absl flags want
  // identifiers; operators type dashes).
  std::vector<std::string> args(argv, argv + argc);
  std::vector<char*> argp;
  for (std::string& a : args) {
    if (a.size() > 2 && a.compare(0, 2, "--") == 0) {
      const size_t end = std::min(a.find('='), a.size());
      for (size_t i = 2; i < end; ++i) {
        if (a[i] == '-') a[i] = '_';
      }
    }
    argp.push_back(a.data());
  }
  absl::ParseCommandLine(static_cast<int>(argp.size()), argp.data());
  return Run();
}
