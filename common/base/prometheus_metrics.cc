#include "common/base/prometheus_metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "prometheus/text_serializer.h"

namespace lft {
namespace {

// A client that sends nothing for this long is dropped.
constexpr int kRequestTimeoutMs = 2000;
constexpr size_t kMaxRequestBytes = 8192;

template <typename Builder, typename FamilyT>
FamilyT* GetOrAddFamily(std::map<std::string, FamilyT*>& families,
                        prometheus::Registry& registry, Builder builder,
                        const std::string& name, const std::string& help) {
  auto it = families.find(name);
  if (it != families.end()) return it->second;
  FamilyT* family = &builder.Name(name).Help(help).Register(registry);
  families[name] = family;
  return family;
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

MetricsRegistry::MetricsRegistry()
    : registry_(std::make_shared<prometheus::Registry>()),
      detached_(std::make_shared<prometheus::Registry>()) {}

prometheus::Counter& MetricsRegistry::Counter(const std::string& name,
                                              const std::string& help,
                                              const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  try {
    if (gauges_.count(name) || histograms_.count(name)) {
      throw std::invalid_argument("registered with another type");
    }
    return GetOrAddFamily(counters_, *registry_, prometheus::BuildCounter(),
                          name, help)
        ->Add(labels);
  } catch (const std::exception& e) {
    LogError("invalid counter", {{"name", name}, {"error", e.what()}});
    return prometheus::BuildCounter()
        .Name("lft_invalid_counter")
        .Register(*detached_)
        .Add({});
  }
}

prometheus::Gauge& MetricsRegistry::Gauge(const std::string& name,
                                          const std::string& help,
                                          const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  try {
    if (counters_.count(name) || histograms_.count(name)) {
      throw std::invalid_argument("registered with another type");
    }
    return GetOrAddFamily(gauges_, *registry_, prometheus::BuildGauge(), name,
                          help)
        ->Add(labels);
  } catch (const std::exception& e) {
    LogError("invalid gauge", {{"name", name}, {"error", e.what()}});
    return prometheus::BuildGauge()
        .Name("lft_invalid_gauge")
        .Register(*detached_)
        .Add({});
  }
}

prometheus::Histogram& MetricsRegistry::Histogram(
    const std::string& name, const std::string& help,
    const std::vector<double>& buckets, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  try {
    if (counters_.count(name) || gauges_.count(name)) {
      throw std::invalid_argument("registered with another type");
    }
    return GetOrAddFamily(histograms_, *registry_, prometheus::BuildHistogram(),
                          name, help)
        ->Add(labels, buckets);
  } catch (const std::exception& e) {
    LogError("invalid histogram", {{"name", name}, {"error", e.what()}});
    return prometheus::BuildHistogram()
        .Name("lft_invalid_histogram")
        .Register(*detached_)
        .Add({}, prometheus::Histogram::BucketBoundaries{1.0});
  }
}

std::string MetricsRegistry::RenderText() const {
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& host, int port, const MetricsRegistry* registry) {
  struct addrinfo hints;
  std::memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* result = nullptr;
  const std::string port_text = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(),
                       &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics: cannot resolve \"", host, "\": ", gai_strerror(rc)));
  }
  int fd = -1;
  int last_errno = 0;
  for (struct addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                  ai->ai_protocol);
    if (fd < 0) {
      last_errno = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 64) == 0)
      break;
    last_errno = errno;
    ::close(fd);
    fd = -1;
  }
  freeaddrinfo(result);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ",
                                               host, ":", port, ": ",
                                               std::strerror(last_errno)));
  }
  struct sockaddr_storage bound;
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<struct sockaddr*>(&bound), &len);
  int bound_port =
      bound.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoToStatus(e, "metrics: pipe");
  }
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(
      fd, pipe_fds[0], pipe_fds[1], bound_port, registry));
}

MetricsHttpServer::MetricsHttpServer(int listen_fd, int wake_read,
                                     int wake_write, int port,
                                     const MetricsRegistry* registry)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read),
      wake_write_fd_(wake_write),
      port_(port),
      registry_(registry) {
  thread_ = std::thread([this] { Serve(); });
}

MetricsHttpServer::~MetricsHttpServer() {
  char byte = 1;
  while (::write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
}

void MetricsHttpServer::Serve() {
  while (true) {
    struct pollfd fds[2] = {{listen_fd_, POLLIN, 0},
                            {wake_read_fd_, POLLIN, 0}};
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      LogError("metrics: poll failed", {{"error", std::strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents & POLLIN) {
      int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      HandleConnection(client);
      ::close(client);
    }
  }
}

void MetricsHttpServer::HandleConnection(int fd) {
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos &&
         request.find("\n\n") == std::string::npos &&
         request.size() < kMaxRequestBytes) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (::poll(&pfd, 1, kRequestTimeoutMs) <= 0) return;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return;
    request.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK";
  std::string content_type = "text/plain; version=0.0.4; charset=utf-8";
  std::string body;
  const bool is_get = absl::StartsWith(request, "GET ");
  const bool is_head = absl::StartsWith(request, "HEAD ");
  const size_t path_begin = request.find(' ') + 1;
  const size_t path_end = request.find_first_of(" ?\r\n", path_begin);
  const std::string path = request.substr(path_begin, path_end - path_begin);
  if (!is_get && !is_head) {
    status = "405 Method Not Allowed";
    content_type = "text/plain";
    body = "only GET and HEAD are supported\n";
  } else if (path == "/metrics") {
    body = registry_->RenderText();
  } else if (path == "/") {
    content_type = "text/plain";
    body = "lft metrics: see /metrics\n";
  } else {
    status = "404 Not Found";
    content_type = "text/plain";
    body = "not found; metrics are at /metrics\n";
  }
  std::string response =
      absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                   "\r\nContent-Length: ", body.size(),
                   "\r\nConnection: close\r\n\r\n", is_head ? "" : body);
  WriteAll(fd, response);
  requests_served_.fetch_add(1);
}

}  // namespace lft
