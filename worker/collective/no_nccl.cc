// Stand-ins for builds without NCCL (every CPU build): GPU groups are
// reported as unavailable rather than left as link errors.
#include "worker/collective/collective.h"

namespace lft {

bool HaveNccl() { return false; }

absl::StatusOr<std::string> NewNcclCommunicatorId() {
  return absl::UnimplementedError(
      "this build of lft has no NCCL (build on the GPU host)");
}

absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(
    const NcclOptions&) {
  return absl::UnimplementedError(
      "this build of lft has no NCCL (build on the GPU host)");
}

}  // namespace lft
