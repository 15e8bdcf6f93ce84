#include "common/rpc/channel.h"

namespace lft {

std::shared_ptr<grpc::Channel> MakeCoordinatorChannel(
    const std::string& target,
    std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  // Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it also bounds each connection
  // attempt, and a short one aborts handshakes of a busy coordinator.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(target, creds, args);
}

}  // namespace lft
