// Listening sockets of lft's gRPC servers: exclusive (a port in use is
// refused, never shared) and, when binding fails, a reason a user can act
// on instead of gRPC's null server.
#ifndef LFT_COMMON_RPC_LISTEN_H_
#define LFT_COMMON_RPC_LISTEN_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace lft {

// Adds `address` ("host:port", port 0 picks one) to `builder` and turns
// SO_REUSEPORT off for the server: gRPC sets it by default on Linux, which
// lets a second lft-store or lft-coordinator bind a port that is in use and
// take half of its connections. `*port` is set by BuildAndStart (0 when the
// port could not be bound).
void AddExclusiveListeningPort(
    grpc::ServerBuilder* builder, const std::string& address,
    const std::shared_ptr<grpc::ServerCredentials>& credentials, int* port);

// OK if `address` can be bound now (port 0 always can); otherwise what
// ListenError says. Servers call it first so that a port in use is
// refused with this message before gRPC logs its own.
absl::Status CheckCanListen(const std::string& address, absl::string_view flag);

// Why `address` cannot be listened on, found by binding it once more:
// Unavailable "cannot listen on ADDRESS (named by FLAG): Address already in
// use ..." (or the system's other reason, or "not an address of this host").
// Call after BuildAndStart returned nullptr or left the port 0.
absl::Status ListenError(const std::string& address, absl::string_view flag);

}  // namespace lft

#endif  // LFT_COMMON_RPC_LISTEN_H_
