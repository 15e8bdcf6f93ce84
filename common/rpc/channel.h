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

// HTTP/2 settings for connections that carry bulk pair data (the latent
// store's PutPairs / ScanPairs), set on both ends: a large initial stream
// window and large frames. gRPC's defaults (a 64 KiB window grown by BDP
// probes, 16 KiB frames) size the window from the round trip, which on
// loopback or a LAN is microseconds, so a stream of 8 MiB pairs stalls on
// window updates and its rate follows thread wake-up latency.
// LFT_GRPC_STREAM_WINDOW_MIB overrides the window in MiB, 0..1024 (0:
// gRPC's defaults, the A/B of docs/benchmarks.md); anything else is
// ignored.
struct BulkTransferSettings {
  int stream_window_bytes = 0;  // 0: leave gRPC's default
  int max_frame_bytes = 0;      // 0: leave gRPC's default
};
BulkTransferSettings BulkTransferSettingsFromEnv();
void ApplyBulkTransferSettings(grpc::ChannelArguments* args);
void ApplyBulkTransferSettings(grpc::ServerBuilder* builder);

}  // namespace lft

#endif  // LFT_COMMON_RPC_CHANNEL_H_
