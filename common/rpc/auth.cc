#include "common/rpc/auth.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/env.h"
#include "common/base/status.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace lft {
namespace {

constexpr char kBearerPrefix[] = "Bearer ";

// OpenSSL's reason for the last failure, and the error queue cleared.
std::string OpenSslReason() {
  const unsigned long code = ERR_peek_last_error();
  std::string reason =
      code == 0 ? "no PEM block of that kind" : ERR_reason_error_string(code);
  ERR_clear_error();
  return reason;
}

using UniqueBio = std::unique_ptr<BIO, decltype(&BIO_free)>;

UniqueBio MemoryBio(const std::string& pem) {
  return UniqueBio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())),
                   &BIO_free);
}

// Certificates in `pem`, in order; InvalidArgument naming `what` and `path`
// when there is none or one does not parse. gRPC would accept such a file
// and fail only when the server starts, without saying which file.
absl::StatusOr<std::vector<std::unique_ptr<X509, decltype(&X509_free)>>>
ParseCertificates(const std::string& pem, absl::string_view what,
                  const std::string& path) {
  std::vector<std::unique_ptr<X509, decltype(&X509_free)>> certs;
  UniqueBio bio = MemoryBio(pem);
  while (true) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    certs.emplace_back(cert, &X509_free);
  }
  const unsigned long last = ERR_peek_last_error();
  // Reading stops with "no start line" at the end of the file: expected.
  if (certs.empty() ||
      (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE)) {
    const std::string reason = OpenSslReason();
    std::string hint;
    if (certs.empty() && absl::StrContains(pem, "PRIVATE KEY")) {
      hint = what == "--tls-cert"
                 ? "; the file holds a private key: are --tls-cert and "
                   "--tls-key swapped?"
                 : "; the file holds a private key";
    }
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, ": not a PEM certificate (", reason, hint, ")"));
  }
  ERR_clear_error();
  return certs;
}

// Checks what gRPC would otherwise only find (and report vaguely) when the
// server starts: the certificate chain and key parse and belong together,
// and the CA file holds certificates.
absl::Status CheckServerPem(const ServerSecurityOptions& options,
                            const std::string& cert_pem,
                            const std::string& key_pem,
                            const std::string& ca_pem) {
  LFT_ASSIGN_OR_RETURN(auto chain, ParseCertificates(cert_pem, "--tls-cert",
                                                     options.tls_cert_path));
  UniqueBio key_bio = MemoryBio(key_pem);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr),
      &EVP_PKEY_free);
  if (key == nullptr) {
    const std::string reason = OpenSslReason();
    const bool certificate = !absl::StrContains(key_pem, "PRIVATE KEY") &&
                             absl::StrContains(key_pem, "CERTIFICATE");
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", options.tls_key_path, ": not a PEM private key (", reason,
        certificate ? "; the file holds a certificate: are --tls-cert and "
                      "--tls-key swapped?"
                    : "",
        ")"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-key ", options.tls_key_path,
                     " does not match the certificate in --tls-cert ",
                     options.tls_cert_path));
  }
  if (!ca_pem.empty()) {
    LFT_RETURN_IF_ERROR(
        ParseCertificates(ca_pem, "--tls-ca", options.tls_ca_path).status());
  }
  return absl::OkStatus();
}

}  // namespace

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  volatile unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = diff | (static_cast<unsigned char>(a[i]) ^
                   static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

bool IsLoopbackAddress(absl::string_view host_port) {
  absl::string_view host = host_port;
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    if (close == absl::string_view::npos) return false;
    host = host.substr(1, close - 1);
  } else {
    const size_t colon = host.rfind(':');
    if (colon != absl::string_view::npos) host = host.substr(0, colon);
  }
  if (absl::StartsWith(host, "ipv4:")) host.remove_prefix(5);
  if (host == "localhost") return true;
  const std::string h(host);
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  return inet_pton(AF_INET6, h.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

std::string TokenFromFlagOrEnv(const std::string& flag_value) {
  if (!flag_value.empty()) return flag_value;
  const char* env = std::getenv(kEnvAuthToken);
  return env == nullptr ? "" : env;
}

absl::Status BearerTokenChecker::Check(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
  if (!enabled()) return absl::OkStatus();
  auto it = metadata.find(kAuthMetadataKey);
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(absl::StrCat(
        "missing bearer token: pass --token or set ", kEnvAuthToken,
        " (sent as \"authorization: Bearer <token>\")"));
  }
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::StartsWith(value, kBearerPrefix)) {
    return absl::UnauthenticatedError(
        "malformed authorization metadata: expected \"Bearer <token>\"");
  }
  value.remove_prefix(sizeof(kBearerPrefix) - 1);
  if (!ConstantTimeEquals(value, token_)) {
    return absl::UnauthenticatedError(
        absl::StrCat("invalid bearer token: check --token / ", kEnvAuthToken,
                     " against the server's"));
  }
  return absl::OkStatus();
}

grpc::Status BearerTokenAuthProcessor::Process(
    const InputMetadata& auth_metadata, grpc::AuthContext* context,
    OutputMetadata* consumed_auth_metadata, OutputMetadata* response_metadata) {
  absl::Status s = checker_.Check(auth_metadata);
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                      std::string(s.message()));
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(what, " ", path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream buf;
  buf << in.rdbuf();
  if (buf.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is not a PEM file"));
  }
  return buf.str();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& options, const std::string& listen_address) {
  const bool tls =
      !options.tls_cert_path.empty() || !options.tls_key_path.empty();
  if (tls && options.insecure_loopback) {
    return absl::InvalidArgumentError(
        "--insecure-loopback and --tls-cert/--tls-key exclude each other");
  }
  if (!tls) {
    if (!options.insecure_loopback) {
      return absl::InvalidArgumentError(
          "no transport security: pass --tls-cert and --tls-key (and --token), "
          "or "
          "--insecure-loopback for a local run on 127.0.0.1");
    }
    if (!IsLoopbackAddress(listen_address)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--insecure-loopback refuses to listen on non-loopback address ",
          listen_address,
          "; use 127.0.0.1:PORT or configure --tls-cert/--tls-key"));
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_path.empty() || options.tls_key_path.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs both --tls-cert and --tls-key");
  }
  if (options.token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS mode requires a bearer token: pass --token or set ",
                     kEnvAuthToken));
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  auto cert = ReadPemFile(options.tls_cert_path, "--tls-cert");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(options.tls_key_path, "--tls-key");
  if (!key.ok()) return key.status();
  std::string ca_pem;
  if (!options.tls_ca_path.empty()) {
    auto ca = ReadPemFile(options.tls_ca_path, "--tls-ca");
    if (!ca.ok()) return ca.status();
    ca_pem = *std::move(ca);
  }
  LFT_RETURN_IF_ERROR(CheckServerPem(options, *cert, *key, ca_pem));
  pair.cert_chain = *cert;
  pair.private_key = *key;
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!ca_pem.empty()) {
    ssl.pem_root_certs = ca_pem;
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY;
  }
  std::shared_ptr<grpc::ServerCredentials> creds =
      grpc::SslServerCredentials(ssl);
  creds->SetAuthMetadataProcessor(
      std::make_shared<BearerTokenAuthProcessor>(options.token));
  return creds;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeChannelCredentials(const ClientSecurityOptions& options,
                       const std::string& target) {
  if (!options.tls_ca_path.empty()) {
    auto ca = ReadPemFile(options.tls_ca_path, "--tls-ca");
    if (!ca.ok()) return ca.status();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca;
    return grpc::SslCredentials(ssl);
  }
  if (options.insecure || IsLoopbackAddress(target)) {
    return grpc::InsecureChannelCredentials();
  }
  return grpc::SslCredentials(grpc::SslCredentialsOptions());
}

void AttachBearerToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty())
    context->AddMetadata(kAuthMetadataKey, absl::StrCat(kBearerPrefix, token));
}

}  // namespace lft
