// WorkerControl that calls a Coordinator in the same process: unit tests of
// WorkerAgent, and single-process runs without gRPC.
#ifndef LFT_TESTS_FAKES_IN_PROCESS_CONTROL_H_
#define LFT_TESTS_FAKES_IN_PROCESS_CONTROL_H_

#include "coordinator/coordinator.h"
#include "worker/agent/worker_control.h"

namespace lft {

// Thread-safe. `core` must outlive this object.
class InProcessWorkerControl : public WorkerControl {
 public:
  explicit InProcessWorkerControl(Coordinator* core) : core_(core) {}
  absl::StatusOr<lft::v1::RegisterResponse> Register(
      const lft::v1::RegisterRequest& request) override {
    return core_->Register(request);
  }
  absl::StatusOr<lft::v1::HeartbeatResponse> Heartbeat(
      const lft::v1::HeartbeatRequest& request) override {
    return core_->Heartbeat(request);
  }
  absl::StatusOr<lft::v1::AcquireTaskResponse> AcquireTask(
      const lft::v1::AcquireTaskRequest& request) override {
    return core_->AcquireTask(request);
  }
  absl::StatusOr<lft::v1::ReportProgressResponse> ReportProgress(
      const lft::v1::ReportProgressRequest& request) override {
    return core_->ReportProgress(request);
  }
  absl::StatusOr<lft::v1::CompleteTaskResponse> CompleteTask(
      const lft::v1::CompleteTaskRequest& request) override {
    return core_->CompleteTask(request);
  }
  absl::StatusOr<lft::v1::RendezvousResponse> Rendezvous(
      const lft::v1::RendezvousRequest& request) override {
    return core_->Rendezvous(request, absl::Seconds(5));
  }

 private:
  Coordinator* const core_;
};

}  // namespace lft

#endif  // LFT_TESTS_FAKES_IN_PROCESS_CONTROL_H_
