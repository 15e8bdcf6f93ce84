// Authentication for every lft gRPC endpoint: TLS from PEM files and a
// shared bearer token sent as "authorization: Bearer <token>" metadata.
//
// Servers run in one of two modes:
//   TLS (--tls-cert, --tls-key, optional --tls-ca): a token is required and
//     checked by BearerTokenAuthProcessor before any handler runs;
//   --insecure-loopback: plaintext, allowed only on a loopback address, for
//     local runs and tests; a token, if configured, is still checked (by the
//     handlers through BearerTokenChecker, since gRPC runs auth processors
//     only on secure transports).
// Token comparison is constant-time.
#ifndef LFT_COMMON_RPC_AUTH_H_
#define LFT_COMMON_RPC_AUTH_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/auth_metadata_processor.h"

namespace lft {

// Metadata key carrying the token (lower case, as gRPC requires).
inline constexpr char kAuthMetadataKey[] = "authorization";

// True iff a == b, in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// True for 127.0.0.0/8, ::1 and localhost, given "host:port" or "[v6]:port".
bool IsLoopbackAddress(absl::string_view host_port);

// `flag_value` if non-empty, else $LFT_AUTH_TOKEN, else "".
std::string TokenFromFlagOrEnv(const std::string& flag_value);

// Thread-safe (immutable).
class BearerTokenChecker {
 public:
  // An empty token disables checking (insecure-loopback without a token).
  explicit BearerTokenChecker(std::string token) : token_(std::move(token)) {}
  bool enabled() const { return !token_.empty(); }
  // OK if disabled or the metadata carries "Bearer <token>"; otherwise
  // Unauthenticated saying how to pass a token (missing) or that it is
  // wrong.
  absl::Status Check(
      const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const;

 private:
  const std::string token_;
};

// Server-side check run by gRPC on secure transports.
class BearerTokenAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenAuthProcessor(std::string token)
      : checker_(std::move(token)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const BearerTokenChecker checker_;
};

struct ServerSecurityOptions {
  std::string tls_cert_path;  // PEM certificate chain
  std::string tls_key_path;   // PEM private key
  std::string tls_ca_path;    // PEM CA for client certificates (optional)
  std::string token;          // required with TLS
  bool insecure_loopback = false;
};

// Credentials for a server that listens on `listen_address`. With TLS, the
// processor checking the token is installed. InvalidArgument when the
// options do not add up (no TLS and no --insecure-loopback; insecure on a
// non-loopback address; TLS without a token), NotFound for an unreadable PEM
// file; each message names the flag to fix.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options, const std::string& listen_address);

struct ClientSecurityOptions {
  std::string tls_ca_path;  // PEM CA that signed the server's certificate
  bool insecure = false;    // plaintext (the server runs --insecure-loopback)
};

// Channel credentials for `target`: TLS with tls_ca_path; plaintext if
// insecure, or if no CA is given and the target is loopback; otherwise TLS
// with the system's roots. NotFound for an unreadable CA file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientSecurityOptions& options,
                       const std::string& target);

// Adds "authorization: Bearer <token>" to the call (nothing if empty).
void AttachBearerToken(grpc::ClientContext* context, const std::string& token);

// Reads a whole file; NotFound naming `what` (e.g. "--tls-cert") on failure.
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view what);

}  // namespace lft

#endif  // LFT_COMMON_RPC_AUTH_H_
