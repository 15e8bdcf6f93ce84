// Client channels to lft's gRPC services.
#ifndef LFT_COMMON_RPC_CHANNEL_H_
#define LFT_COMMON_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"

namespace lft {

// A channel to the coordinator that reconnects quickly after it restarts
// (reconnect back-off 100 ms .. 1 s instead of gRPC's 1 s .. 120 s). Never
// fails: connection errors surface on the first call.
std::shared_ptr<grpc::Channel> MakeCoordinatorChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> creds);

}  // namespace lft

#endif  // LFT_COMMON_RPC_CHANNEL_H_
