#include "common/rpc/listen.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "grpc/grpc.h"

namespace lft {
namespace {

// "host:port" or "[v6]:port" split; false if there is no port.
bool SplitHostPort(const std::string& address, std::string* host,
                   std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
}

// The errno of binding `address` as gRPC does (SO_REUSEADDR, no
// SO_REUSEPORT), or 0 if it binds now; -1 if the host does not resolve.
int BindErrno(const std::string& address) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) return EINVAL;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints,
                  &found) != 0) {
    return -1;
  }
  int error = 0;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) {
      error = errno;
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    error = bind(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    close(fd);
    if (error != 0) break;
  }
  freeaddrinfo(found);
  return error;
}

}  // namespace

void AddExclusiveListeningPort(
    grpc::ServerBuilder* builder, const std::string& address,
    const std::shared_ptr<grpc::ServerCredentials>& credentials, int* port) {
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder->AddListeningPort(address, credentials, port);
}

absl::Status CheckCanListen(const std::string& address,
                            absl::string_view flag) {
  if (BindErrno(address) == 0) return absl::OkStatus();
  return ListenError(address, flag);
}

absl::Status ListenError(const std::string& address, absl::string_view flag) {
  const int error = BindErrno(address);
  std::string reason;
  if (error == -1) {
    reason = "the host does not resolve";
  } else if (error == EADDRINUSE) {
    reason =
        "Address already in use: another process listens there; stop it or "
        "pick another port";
  } else if (error == EADDRNOTAVAIL) {
    reason = "not an address of this host";
  } else if (error != 0) {
    reason = std::strerror(error);
  } else {
    reason = "gRPC could not start the server (see the log above)";
  }
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", address, " (", flag, "): ", reason));
}

}  // namespace lft
