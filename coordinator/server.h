// lft-coordinator as a library: the Coordinator, its gRPC server (JobService,
// WorkerService, CheckpointService) and the /metrics endpoint, started
// together. main() parses flags and calls Start.
#ifndef LFT_COORDINATOR_SERVER_H_
#define LFT_COORDINATOR_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/base/prometheus_metrics.h"
#include "common/rpc/auth.h"
#include "coordinator/coordinator.h"
#include "coordinator/grpc_services.h"
#include "latent-store/pair_store_pool.h"
#include "latent-store/remote_pair_store.h"

namespace lft {

struct ServerOptions {
  std::string listen_address = "127.0.0.1:7070";
  std::string db_path;
  ServerSecurityOptions security;
  // -1 disables /metrics; 0 picks a free port.
  int metrics_port = -1;
  // Loopback like every other listening socket; a scrape from another host
  // needs --metrics-host 0.0.0.0 (or the pod IP).
  std::string metrics_host = "127.0.0.1";
  // coordinator.latent_store is set by Start: a client of
  // coordinator.store_address (when set) with store_credentials, which
  // CheckpointService uses too (token, CA).
  CoordinatorOptions coordinator;
  StoreClientCredentials store_credentials;
  // Period of the lease reaper and planner.
  int64_t tick_ms = 200;
};

// Thread-safe.
class CoordinatorServer {
 public:
  // Opens the state, binds the gRPC and metrics ports and starts serving.
  // InvalidArgument for inconsistent security flags or an unloadable
  // certificate, key or CA; Unavailable if a port is in use (never shared:
  // SO_REUSEPORT is off) or cannot be bound, or the db is locked; errors of
  // Coordinator::Open (a read-only or non-directory --db). Nothing keeps
  // running on error.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const ServerOptions& options);
  ~CoordinatorServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_ ? metrics_->port() : -1; }
  Coordinator* coordinator() { return core_.get(); }
  // Stops accepting calls, ends streams within `grace` and stops the loops.
  void Shutdown(absl::Duration grace);

 private:
  CoordinatorServer() = default;

  RealClock clock_;
  CorpusSharderSharding sharding_;
  MetricsRegistry registry_;
  std::unique_ptr<BearerTokenChecker> auth_;
  std::unique_ptr<RpcGuard> guard_;
  // Before core_, which uses one of its stores until it is destroyed.
  std::unique_ptr<PairStorePool> lifecycle_stores_;
  std::unique_ptr<Coordinator> core_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<PairStorePool> store_pool_;  // CheckpointService's
  std::unique_ptr<CheckpointServiceImpl> checkpoint_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> metrics_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_SERVER_H_
