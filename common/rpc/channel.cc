#include "common/rpc/channel.h"

#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"

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

BulkTransferSettings BulkTransferSettingsFromEnv() {
  // 16 MiB: two pairs of the Pythia-410M shape in flight per stream; the
  // receiver buffers at most this much per stream.
  int window_mib = 16;
  if (const char* env = std::getenv("LFT_GRPC_STREAM_WINDOW_MIB")) {
    int v = 0;
    if (absl::SimpleAtoi(env, &v) && v >= 0 && v <= 1024) window_mib = v;
  }
  BulkTransferSettings s;
  if (window_mib > 0) {
    s.stream_window_bytes = window_mib << 20;
    s.max_frame_bytes = (1 << 24) - 1;  // HTTP/2's largest frame
  }
  return s;
}

void ApplyBulkTransferSettings(grpc::ChannelArguments* args) {
  const BulkTransferSettings s = BulkTransferSettingsFromEnv();
  if (s.stream_window_bytes > 0) {
    args->SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, s.stream_window_bytes);
  }
  if (s.max_frame_bytes > 0) {
    args->SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, s.max_frame_bytes);
  }
}

void ApplyBulkTransferSettings(grpc::ServerBuilder* builder) {
  const BulkTransferSettings s = BulkTransferSettingsFromEnv();
  if (s.stream_window_bytes > 0) {
    builder->AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                                s.stream_window_bytes);
  }
  if (s.max_frame_bytes > 0) {
    builder->AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE,
                                s.max_frame_bytes);
  }
}

}  // namespace lft
