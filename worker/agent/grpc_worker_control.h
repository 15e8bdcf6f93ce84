// WorkerControl over gRPC, with the bearer token on every call.
#ifndef LFT_WORKER_AGENT_GRPC_WORKER_CONTROL_H_
#define LFT_WORKER_AGENT_GRPC_WORKER_CONTROL_H_

#include <memory>
#include <string>

#include "common/rpc/channel.h"
#include "grpcpp/grpcpp.h"
#include "lft/v1/worker.grpc.pb.h"
#include "worker/agent/worker_control.h"

namespace lft {

// Thread-safe.
class GrpcWorkerControl : public WorkerControl {
 public:
  GrpcWorkerControl(std::shared_ptr<grpc::Channel> channel, std::string token);
  absl::StatusOr<lft::v1::RegisterResponse> Register(
      const lft::v1::RegisterRequest& request) override;
  absl::StatusOr<lft::v1::HeartbeatResponse> Heartbeat(
      const lft::v1::HeartbeatRequest& request) override;
  absl::StatusOr<lft::v1::AcquireTaskResponse> AcquireTask(
      const lft::v1::AcquireTaskRequest& request) override;
  absl::StatusOr<lft::v1::ReportProgressResponse> ReportProgress(
      const lft::v1::ReportProgressRequest& request) override;
  absl::StatusOr<lft::v1::CompleteTaskResponse> CompleteTask(
      const lft::v1::CompleteTaskRequest& request) override;
  absl::StatusOr<lft::v1::RendezvousResponse> Rendezvous(
      const lft::v1::RendezvousRequest& request) override;

 private:
  const std::unique_ptr<lft::v1::WorkerService::Stub> stub_;
  const std::string token_;
};

}  // namespace lft

#endif  // LFT_WORKER_AGENT_GRPC_WORKER_CONTROL_H_
