// Thin gRPC handlers for JobService, CheckpointService and WorkerService:
// each checks the
// bearer token, converts the request and calls the Coordinator, maps the
// absl::Status to a gRPC status, and counts the call in
// lft_coordinator_rpcs_total{method,code}.
#ifndef LFT_COORDINATOR_GRPC_SERVICES_H_
#define LFT_COORDINATOR_GRPC_SERVICES_H_

#include <functional>
#include <string>
#include <utility>

#include "common/base/prometheus_metrics.h"
#include "common/rpc/auth.h"
#include "coordinator/coordinator.h"
#include "latent-store/pair_store_pool.h"
#include "lft/v1/checkpoint.grpc.pb.h"
#include "lft/v1/job.grpc.pb.h"
#include "lft/v1/worker.grpc.pb.h"

namespace lft {

// Shared by both services: auth, status mapping and metrics around a call.
class RpcGuard {
 public:
  RpcGuard(const BearerTokenChecker* auth, MetricsRegistry* metrics)
      : auth_(auth), metrics_(metrics) {}
  grpc::Status Run(const char* method, grpc::ServerContext* context,
                   const std::function<absl::Status()>& body) const;

 private:
  const BearerTokenChecker* const auth_;
  MetricsRegistry* const metrics_;
};

class JobServiceImpl final : public lft::v1::JobService::Service {
 public:
  JobServiceImpl(Coordinator* core, const RpcGuard* guard)
      : core_(core), guard_(guard) {}
  grpc::Status Submit(grpc::ServerContext* context,
                      const lft::v1::SubmitJobRequest* request,
                      lft::v1::SubmitJobResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const lft::v1::GetJobRequest* request,
                   lft::v1::GetJobResponse* response) override;
  grpc::Status List(grpc::ServerContext* context,
                    const lft::v1::ListJobsRequest* request,
                    lft::v1::ListJobsResponse* response) override;
  grpc::Status Watch(grpc::ServerContext* context,
                     const lft::v1::WatchJobRequest* request,
                     grpc::ServerWriter<lft::v1::JobEvent>* writer) override;
  grpc::Status Cancel(grpc::ServerContext* context,
                      const lft::v1::CancelJobRequest* request,
                      lft::v1::CancelJobResponse* response) override;
  grpc::Status Delete(grpc::ServerContext* context,
                      const lft::v1::DeleteJobRequest* request,
                      lft::v1::DeleteJobResponse* response) override;

 private:
  Coordinator* const core_;
  const RpcGuard* const guard_;
};

// CheckpointService: a job's checkpoints and reports, relayed from the latent
// store its tasks use (CoordinatorOptions::store_address; checkpoints live on
// store 0 of a sharded "a,b" address). NOT_FOUND for a job the coordinator
// does not know; FAILED_PRECONDITION when it runs without a store address
// (workers then embed their own stores, which the coordinator cannot read).
class CheckpointServiceImpl final : public lft::v1::CheckpointService::Service {
 public:
  // `stores` (may be null when store_address is empty) outlives the service.
  CheckpointServiceImpl(Coordinator* core, PairStorePool* stores,
                        std::string store_address, const RpcGuard* guard)
      : core_(core),
        stores_(stores),
        store_address_(std::move(store_address)),
        guard_(guard) {}
  grpc::Status List(grpc::ServerContext* context,
                    const lft::v1::ListJobCheckpointsRequest* request,
                    lft::v1::ListCheckpointsResponse* response) override;
  grpc::Status Pull(
      grpc::ServerContext* context,
      const lft::v1::PullCheckpointRequest* request,
      grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) override;

 private:
  // The job's store, after checking the job exists.
  absl::StatusOr<PairStore*> StoreOfJob(const std::string& job_id) const;

  Coordinator* const core_;
  PairStorePool* const stores_;
  const std::string store_address_;
  const RpcGuard* const guard_;
};

class WorkerServiceImpl final : public lft::v1::WorkerService::Service {
 public:
  WorkerServiceImpl(Coordinator* core, const RpcGuard* guard)
      : core_(core), guard_(guard) {}
  grpc::Status Register(grpc::ServerContext* context,
                        const lft::v1::RegisterRequest* request,
                        lft::v1::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context,
                         const lft::v1::HeartbeatRequest* request,
                         lft::v1::HeartbeatResponse* response) override;
  grpc::Status AcquireTask(grpc::ServerContext* context,
                           const lft::v1::AcquireTaskRequest* request,
                           lft::v1::AcquireTaskResponse* response) override;
  grpc::Status ReportProgress(
      grpc::ServerContext* context,
      const lft::v1::ReportProgressRequest* request,
      lft::v1::ReportProgressResponse* response) override;
  grpc::Status CompleteTask(grpc::ServerContext* context,
                            const lft::v1::CompleteTaskRequest* request,
                            lft::v1::CompleteTaskResponse* response) override;
  grpc::Status Rendezvous(grpc::ServerContext* context,
                          const lft::v1::RendezvousRequest* request,
                          lft::v1::RendezvousResponse* response) override;

 private:
  Coordinator* const core_;
  const RpcGuard* const guard_;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_GRPC_SERVICES_H_
