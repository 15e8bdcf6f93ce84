#include "coordinator/server.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/db_directory.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/rpc/listen.h"

namespace lft {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const ServerOptions& options) {
  if (options.db_path.empty()) {
    return absl::InvalidArgumentError(
        "--db: name the coordinator's state directory");
  }
  LFT_RETURN_IF_ERROR(CheckDbDirectory(options.db_path, "--db"));
  LFT_ASSIGN_OR_RETURN(
      std::shared_ptr<grpc::ServerCredentials> creds,
      MakeServerCredentials(options.security, options.listen_address));
  // Refused before gRPC tries (and logs its own lines about it).
  LFT_RETURN_IF_ERROR(CheckCanListen(options.listen_address, "--listen"));
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  CoordinatorOptions core_options = options.coordinator;
  if (!core_options.store_address.empty() &&
      core_options.latent_store == nullptr) {
    // The job lifecycle (create, retention, delete) through a pool, so that
    // "a,b" becomes the same ShardedPairStore the workers write through and
    // a job is registered in, and deleted from, every store it spans. These
    // calls run on the scheduling tick: a hung store may hold it 60 s, not
    // the default 5 minutes of a checkpoint transfer.
    RemotePairStoreOptions lifecycle;
    lifecycle.credentials = options.store_credentials;
    lifecycle.rpc_timeout = absl::Seconds(60);
    s->lifecycle_stores_ = std::make_unique<PairStorePool>("", lifecycle);
    LFT_ASSIGN_OR_RETURN(core_options.latent_store,
                         s->lifecycle_stores_->Get(core_options.store_address));
  }
  LFT_ASSIGN_OR_RETURN(
      s->core_, Coordinator::Open(options.db_path, core_options, &s->clock_,
                                  &s->sharding_, &s->registry_));
  s->auth_ = std::make_unique<BearerTokenChecker>(options.security.token);
  s->guard_ = std::make_unique<RpcGuard>(s->auth_.get(), &s->registry_);
  s->job_service_ =
      std::make_unique<JobServiceImpl>(s->core_.get(), s->guard_.get());
  s->worker_service_ =
      std::make_unique<WorkerServiceImpl>(s->core_.get(), s->guard_.get());
  if (!options.coordinator.store_address.empty()) {
    RemotePairStoreOptions remote;
    remote.credentials = options.store_credentials;
    s->store_pool_ = std::make_unique<PairStorePool>("", remote);
  }
  s->checkpoint_service_ = std::make_unique<CheckpointServiceImpl>(
      s->core_.get(), s->store_pool_.get(), options.coordinator.store_address,
      s->guard_.get());
  grpc::ServerBuilder builder;
  AddExclusiveListeningPort(&builder, options.listen_address, creds, &s->port_);
  builder.RegisterService(s->job_service_.get());
  builder.RegisterService(s->worker_service_.get());
  builder.RegisterService(s->checkpoint_service_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    // A server that bound nothing is not started; drop it before it is
    // shut down.
    s->server_.reset();
    return ListenError(options.listen_address, "--listen");
  }
  if (options.metrics_port >= 0) {
    LFT_ASSIGN_OR_RETURN(s->metrics_, MetricsHttpServer::Start(
                                          options.metrics_host,
                                          options.metrics_port, &s->registry_));
  }
  s->core_->StartBackgroundLoop(absl::Milliseconds(options.tick_ms));
  LogInfo("coordinator serving",
          {{"address", options.listen_address},
           {"port", s->port_},
           {"tls", options.security.insecure_loopback ? "off" : "on"},
           {"auth", s->auth_->enabled() ? "bearer" : "none"},
           {"metrics_port", s->metrics_port()}});
  return s;
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // Start may have failed half-way (db locked, port in use): stop only what
  // was started.
  // Wake blocked Watch/AcquireTask/Rendezvous calls first so the server's
  // shutdown does not wait for them.
  if (core_ != nullptr) core_->Shutdown();
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      absl::ToChronoSeconds(grace));
  }
  metrics_.reset();
}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::Seconds(2)); }

}  // namespace lft
