// Gloo (CPU, TCP) implementation of Collective, and the key-value server that
// its ranks rendezvous through.
//
// Gloo's rendezvous needs a store with set/get/wait that every rank reaches.
// c10d ships a TCPStore for this; Debian's Gloo ships only file, hash and
// Redis stores, so rank 0 hosts a tiny key-value server here (a few keys of
// tens of bytes per rank, one short-lived connection per rank) and its
// address is the communicator id the coordinator relays.
//
// Wire format, all integers little-endian u32:
//   set:  'S' klen key vlen value        -> 'K'
//   get:  'G' klen key timeout_ms        -> 'K' vlen value | 'T' (timed out)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/status.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/broadcast.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/prefix_store.h"
#include "gloo/rendezvous/store.h"
#include "gloo/transport/tcp/device.h"
#include "worker/collective/collective.h"

namespace lft {
namespace {

constexpr size_t kMaxKvBytes = 1 << 20;

bool SendAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool RecvAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool SendU32(int fd, uint32_t v) { return SendAll(fd, &v, 4); }
bool RecvU32(int fd, uint32_t* v) { return RecvAll(fd, v, 4); }
bool SendBlob(int fd, const std::string& s) {
  return SendU32(fd, static_cast<uint32_t>(s.size())) &&
         SendAll(fd, s.data(), s.size());
}
bool RecvBlob(int fd, std::string* s) {
  uint32_t n;
  if (!RecvU32(fd, &n) || n > kMaxKvBytes) return false;
  s->resize(n);
  return RecvAll(fd, s->data(), n);
}

// Splits "host:port" (IPv6 as "[::1]:port").
absl::Status SplitHostPort(const std::string& id, std::string* host,
                           int* port) {
  const size_t colon = id.rfind(':');
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(id.substr(colon + 1), port) || *port <= 0 ||
      *port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("communicator id \"", id, "\" is not host:port"));
  }
  *host = id.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[')
    *host = host->substr(1, host->size() - 2);
  return absl::OkStatus();
}

class KeyValueServer : public GlooRendezvousHost {
 public:
  KeyValueServer(int listen_fd, std::string id)
      : listen_fd_(listen_fd), id_(std::move(id)) {
    if (pipe2(wake_, O_CLOEXEC) != 0) wake_[0] = wake_[1] = -1;
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~KeyValueServer() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      for (int fd : clients_) ::shutdown(fd, SHUT_RDWR);
    }
    char b = 1;
    if (wake_[1] >= 0) (void)!::write(wake_[1], &b, 1);
    accept_thread_.join();
    for (auto& t : client_threads_) t.join();
    ::close(listen_fd_);
    if (wake_[0] >= 0) ::close(wake_[0]);
    if (wake_[1] >= 0) ::close(wake_[1]);
  }

  std::string communicator_id() const override { return id_; }

 private:
  void AcceptLoop() {
    while (true) {
      pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents != 0) return;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      clients_.insert(fd);
      client_threads_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    while (true) {
      char op;
      std::string key;
      if (!RecvAll(fd, &op, 1) || !RecvBlob(fd, &key)) break;
      if (op == 'S') {
        std::string value;
        if (!RecvBlob(fd, &value)) break;
        {
          absl::MutexLock lock(&mu_);
          values_[key] = std::move(value);
        }
        if (!SendAll(fd, "K", 1)) break;
      } else if (op == 'G') {
        uint32_t timeout_ms;
        if (!RecvU32(fd, &timeout_ms)) break;
        std::string value;
        bool found;
        {
          absl::MutexLock lock(&mu_);
          auto ready = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
            return stopping_ || values_.count(key) > 0;
          };
          mu_.AwaitWithTimeout(absl::Condition(&ready),
                               absl::Milliseconds(timeout_ms));
          found = values_.count(key) > 0;
          if (found) value = values_[key];
        }
        if (found ? !(SendAll(fd, "K", 1) && SendBlob(fd, value))
                  : !SendAll(fd, "T", 1))
          break;
      } else {
        break;
      }
    }
    absl::MutexLock lock(&mu_);
    clients_.erase(fd);
    ::close(fd);
  }

  const int listen_fd_;
  const std::string id_;
  int wake_[2] = {-1, -1};
  std::thread accept_thread_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> values_ ABSL_GUARDED_BY(mu_);
  std::set<int> clients_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread>
      client_threads_;  // touched by the accept thread only
};

// gloo::rendezvous::Store over one connection to the KeyValueServer. Gloo's
// store API reports failure by exception; Create catches them.
class KeyValueClient : public gloo::rendezvous::Store {
 public:
  KeyValueClient(int fd, std::chrono::milliseconds timeout)
      : fd_(fd), timeout_(timeout) {}
  ~KeyValueClient() override { ::close(fd_); }

  void set(const std::string& key, const std::vector<char>& data) override {
    std::lock_guard<std::mutex> lock(mu_);
    char ack;
    if (!SendAll(fd_, "S", 1) || !SendBlob(fd_, key) ||
        !SendBlob(fd_, std::string(data.begin(), data.end())) ||
        !RecvAll(fd_, &ack, 1)) {
      throw std::runtime_error("rendezvous server connection lost during set");
    }
  }

  std::vector<char> get(const std::string& key) override {
    return Get(key, timeout_);
  }

  void wait(const std::vector<std::string>& keys) override {
    wait(keys, timeout_);
  }

  void wait(const std::vector<std::string>& keys,
            const std::chrono::milliseconds& timeout) override {
    for (const auto& k : keys) Get(k, timeout);
  }

 private:
  std::vector<char> Get(const std::string& key,
                        std::chrono::milliseconds timeout) {
    std::lock_guard<std::mutex> lock(mu_);
    char status;
    if (!SendAll(fd_, "G", 1) || !SendBlob(fd_, key) ||
        !SendU32(fd_, static_cast<uint32_t>(timeout.count())) ||
        !RecvAll(fd_, &status, 1)) {
      throw std::runtime_error("rendezvous server connection lost during get");
    }
    if (status == 'T') {
      throw std::runtime_error(absl::StrCat("Timed out after ", timeout.count(),
                                            " ms waiting for rendezvous key ",
                                            key, " (a rank did not join)"));
    }
    std::string value;
    if (!RecvBlob(fd_, &value))
      throw std::runtime_error("rendezvous reply truncated");
    return std::vector<char>(value.begin(), value.end());
  }

  std::mutex mu_;
  const int fd_;
  const std::chrono::milliseconds timeout_;
};

absl::StatusOr<int> Connect(const std::string& host, int port,
                            std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc =
          getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
      rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot resolve rendezvous host ", host, ": ", gai_strerror(rc)));
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int last_errno = 0;
  // The host may not be listening yet when a rank races ahead: retry.
  while (std::chrono::steady_clock::now() < deadline) {
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                        ai->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        freeaddrinfo(res);
        return fd;
      }
      last_errno = errno;
      ::close(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  freeaddrinfo(res);
  return absl::DeadlineExceededError(
      absl::StrCat("cannot reach rendezvous host ", host, ":", port, ": ",
                   std::strerror(last_errno)));
}

absl::Status FromGlooException(const std::exception& e,
                               absl::string_view what) {
  const std::string msg = e.what();
  if (absl::StrContains(msg, "Timed out") ||
      absl::StrContains(msg, "timed out")) {
    return absl::DeadlineExceededError(absl::StrCat("gloo ", what, ": ", msg));
  }
  return absl::UnavailableError(absl::StrCat("gloo ", what, ": ", msg));
}

class GlooCollective : public Collective {
 public:
  GlooCollective(std::shared_ptr<gloo::rendezvous::Context> context,
                 std::unique_ptr<KeyValueClient> store,
                 std::chrono::milliseconds timeout)
      : context_(std::move(context)),
        store_(std::move(store)),
        timeout_(timeout) {}

  int rank() const override { return context_->rank; }
  int world_size() const override { return context_->size; }

  absl::Status AllReduceSum(void* data, size_t count,
                            CollectiveDtype dtype) override {
    if (aborted_)
      return absl::FailedPreconditionError("collective was aborted");
    if (dtype != CollectiveDtype::kF32) {
      return absl::UnimplementedError(
          "the Gloo collective reduces float32 only");
    }
    if (count == 0) return absl::OkStatus();
    try {
      gloo::AllreduceOptions opts(context_);
      opts.setOutput(static_cast<float*>(data), count);
      opts.setReduceFunction(
          static_cast<void (*)(void*, const void*, const void*, size_t)>(
              &gloo::sum<float>));
      opts.setTag(next_tag_++);
      opts.setTimeout(timeout_);
      gloo::allreduce(opts);
    } catch (const std::exception& e) {
      return FromGlooException(e, "all-reduce");
    }
    return absl::OkStatus();
  }

  absl::Status Broadcast(void* data, size_t bytes, int root) override {
    if (aborted_)
      return absl::FailedPreconditionError("collective was aborted");
    if (root < 0 || root >= world_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("broadcast root ", root, " out of range"));
    }
    try {
      gloo::BroadcastOptions opts(context_);
      opts.setOutput(static_cast<uint8_t*>(data), bytes);
      opts.setRoot(root);
      opts.setTag(next_tag_++);
      opts.setTimeout(timeout_);
      gloo::broadcast(opts);
    } catch (const std::exception& e) {
      return FromGlooException(e, "broadcast");
    }
    return absl::OkStatus();
  }

  absl::Status Barrier() override {
    if (aborted_)
      return absl::FailedPreconditionError("collective was aborted");
    try {
      gloo::BarrierOptions opts(context_);
      opts.setTag(next_tag_++);
      opts.setTimeout(timeout_);
      gloo::barrier(opts);
    } catch (const std::exception& e) {
      return FromGlooException(e, "barrier");
    }
    return absl::OkStatus();
  }

  void Abort() override {
    aborted_ = true;
    context_.reset();
  }

 private:
  std::shared_ptr<gloo::rendezvous::Context> context_;
  std::unique_ptr<KeyValueClient> store_;
  const std::chrono::milliseconds timeout_;
  uint32_t next_tag_ = 1;
  bool aborted_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GlooRendezvousHost>> StartGlooRendezvous(
    const std::string& bind_host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(bind_host.c_str(), "0", &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve ", bind_host, ": ", gai_strerror(rc)));
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                  ai->ai_protocol);
    if (fd < 0) continue;
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        ::listen(fd, 128) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    return ErrnoToStatus(errno,
                         absl::StrCat("rendezvous: listen on ", bind_host));
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port =
      addr.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
          : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  const std::string host = addr.ss_family == AF_INET6
                               ? absl::StrCat("[", bind_host, "]")
                               : bind_host;
  return std::unique_ptr<GlooRendezvousHost>(
      new KeyValueServer(fd, absl::StrCat(host, ":", port)));
}

absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(
    const GlooOptions& options) {
  if (options.world_size < 1 || options.rank < 0 ||
      options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is not in a group of ", options.world_size));
  }
  std::string host;
  int port = 0;
  LFT_RETURN_IF_ERROR(SplitHostPort(options.communicator_id, &host, &port));
  LFT_ASSIGN_OR_RETURN(int fd, Connect(host, port, options.timeout));
  auto store = std::make_unique<KeyValueClient>(fd, options.timeout);
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.listen_host;
    auto device = gloo::transport::tcp::CreateDevice(attr);
    auto context = std::make_shared<gloo::rendezvous::Context>(
        options.rank, options.world_size);
    context->setTimeout(options.timeout);
    gloo::rendezvous::PrefixStore prefixed(options.group_prefix, *store);
    context->connectFullMesh(prefixed, device);
    return std::unique_ptr<Collective>(new GlooCollective(
        std::move(context), std::move(store), options.timeout));
  } catch (const std::exception& e) {
    return FromGlooException(e, "rendezvous");
  }
}

}  // namespace lft
