// The worker's view of WorkerService, as an interface so that WorkerAgent
// runs over gRPC (GrpcWorkerControl) or calls a Coordinator in the same
// process (InProcessWorkerControl, used by unit tests and single-process
// runs).
#ifndef LFT_WORKER_AGENT_WORKER_CONTROL_H_
#define LFT_WORKER_AGENT_WORKER_CONTROL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lft/v1/worker.pb.h"

namespace lft {

// Thread-safe implementations only (heartbeats run on their own thread).
// Errors are those of the Coordinator methods of the same names, plus
// Unavailable / DeadlineExceeded when the coordinator cannot be reached.
class WorkerControl {
 public:
  virtual ~WorkerControl() = default;
  virtual absl::StatusOr<lft::v1::RegisterResponse> Register(
      const lft::v1::RegisterRequest& request) = 0;
  virtual absl::StatusOr<lft::v1::HeartbeatResponse> Heartbeat(
      const lft::v1::HeartbeatRequest& request) = 0;
  virtual absl::StatusOr<lft::v1::AcquireTaskResponse> AcquireTask(
      const lft::v1::AcquireTaskRequest& request) = 0;
  virtual absl::StatusOr<lft::v1::ReportProgressResponse> ReportProgress(
      const lft::v1::ReportProgressRequest& request) = 0;
  virtual absl::StatusOr<lft::v1::CompleteTaskResponse> CompleteTask(
      const lft::v1::CompleteTaskRequest& request) = 0;
  virtual absl::StatusOr<lft::v1::RendezvousResponse> Rendezvous(
      const lft::v1::RendezvousRequest& request) = 0;
};

}  // namespace lft

#endif  // LFT_WORKER_AGENT_WORKER_CONTROL_H_
