#include "worker/agent/grpc_worker_control.h"

#include <chrono>

#include "common/rpc/auth.h"
#include "common/rpc/grpc_status.h"

namespace lft {
namespace {

template <typename Req, typename Resp, typename Method>
absl::StatusOr<Resp> Call(lft::v1::WorkerService::Stub* stub,
                          const std::string& token, int64_t timeout_ms,
                          Method method, const Req& request) {
  grpc::ClientContext context;
  AttachBearerToken(&context, token);
  // Queue while the coordinator restarts instead of failing fast: this also
  // makes the channel reconnect as soon as it is back (a fail-fast call on a
  // channel in TRANSIENT_FAILURE does not trigger a new connection attempt).
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(timeout_ms));
  Resp response;
  grpc::Status s = (stub->*method)(&context, request, &response);
  if (!s.ok()) return FromGrpcStatus(s);
  return response;
}

constexpr int64_t kCallTimeoutMs = 10000;

}  // namespace

GrpcWorkerControl::GrpcWorkerControl(std::shared_ptr<grpc::Channel> channel,
                                     std::string token)
    : stub_(lft::v1::WorkerService::NewStub(channel)),
      token_(std::move(token)) {}

absl::StatusOr<lft::v1::RegisterResponse> GrpcWorkerControl::Register(
    const lft::v1::RegisterRequest& request) {
  return Call<lft::v1::RegisterRequest, lft::v1::RegisterResponse>(
      stub_.get(), token_, kCallTimeoutMs,
      &lft::v1::WorkerService::Stub::Register, request);
}

absl::StatusOr<lft::v1::HeartbeatResponse> GrpcWorkerControl::Heartbeat(
    const lft::v1::HeartbeatRequest& request) {
  return Call<lft::v1::HeartbeatRequest, lft::v1::HeartbeatResponse>(
      stub_.get(), token_, kCallTimeoutMs,
      &lft::v1::WorkerService::Stub::Heartbeat, request);
}

absl::StatusOr<lft::v1::AcquireTaskResponse> GrpcWorkerControl::AcquireTask(
    const lft::v1::AcquireTaskRequest& request) {
  return Call<lft::v1::AcquireTaskRequest, lft::v1::AcquireTaskResponse>(
      stub_.get(), token_, kCallTimeoutMs + request.wait_ms(),
      &lft::v1::WorkerService::Stub::AcquireTask, request);
}

absl::StatusOr<lft::v1::ReportProgressResponse>
GrpcWorkerControl::ReportProgress(
    const lft::v1::ReportProgressRequest& request) {
  return Call<lft::v1::ReportProgressRequest, lft::v1::ReportProgressResponse>(
      stub_.get(), token_, kCallTimeoutMs,
      &lft::v1::WorkerService::Stub::ReportProgress, request);
}

absl::StatusOr<lft::v1::CompleteTaskResponse> GrpcWorkerControl::CompleteTask(
    const lft::v1::CompleteTaskRequest& request) {
  return Call<lft::v1::CompleteTaskRequest, lft::v1::CompleteTaskResponse>(
      stub_.get(), token_, kCallTimeoutMs,
      &lft::v1::WorkerService::Stub::CompleteTask, request);
}

absl::StatusOr<lft::v1::RendezvousResponse> GrpcWorkerControl::Rendezvous(
    const lft::v1::RendezvousRequest& request) {
  return Call<lft::v1::RendezvousRequest, lft::v1::RendezvousResponse>(
      stub_.get(), token_, 30000, &lft::v1::WorkerService::Stub::Rendezvous,
      request);
}

}  // namespace lft
