// absl::Status <-> grpc::Status. The codes have the same numbers; messages
// pass through unchanged so users see the coordinator's own words.
#ifndef LFT_COORDINATOR_GRPC_STATUS_H_
#define LFT_COORDINATOR_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace lft {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace lft

#endif  // LFT_COORDINATOR_GRPC_STATUS_H_
