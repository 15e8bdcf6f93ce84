// absl::Status <-> grpc::Status, so that handlers stay thin and clients get
// back the code and message the library produced.
//
// The mapping is one-to-one: absl::StatusCode and grpc::StatusCode share the
// canonical code numbering (OK=0 ... UNAUTHENTICATED=16), so a status
// survives the round trip ToGrpcStatus -> wire -> FromGrpcStatus unchanged.
// Codes outside the canonical range become UNKNOWN. Messages pass through
// as they are: the library already writes them for the user (file, field,
// expected value); handlers may prefix the RPC name with Annotate().
#ifndef LFT_COMMON_RPC_GRPC_STATUS_H_
#define LFT_COMMON_RPC_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace lft {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace lft

#endif  // LFT_COMMON_RPC_GRPC_STATUS_H_
