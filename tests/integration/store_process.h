// Starts lft-store as a real child process for integration tests and reads
// its "listening on" line; every wait is bounded.
#ifndef LFT_TESTS_INTEGRATION_STORE_PROCESS_H_
#define LFT_TESTS_INTEGRATION_STORE_PROCESS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace lft {
namespace testing_util {

class StoreProcess {
 public:
  // Starts `binary` with `args` and waits up to `timeout` for its
  // "listening on HOST:PORT" line (and "metrics on" when asked for).
  static absl::StatusOr<StoreProcess> Start(
      const std::string& binary, const std::vector<std::string>& args,
      absl::Duration timeout) {
    int out[2];
    if (pipe(out) != 0) return absl::InternalError("pipe failed");
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork failed");
    if (pid == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      std::vector<char*> argv;
      std::vector<std::string> all = {binary};
      all.insert(all.end(), args.begin(), args.end());
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    StoreProcess p;
    p.pid_ = pid;
    p.out_fd_ = out[0];
    const absl::Time deadline = absl::Now() + timeout;
    std::string buffer;
    while (absl::Now() < deadline) {
      pollfd pfd{p.out_fd_, POLLIN, 0};
      const int ms = static_cast<int>(
          absl::ToInt64Milliseconds(deadline - absl::Now()) + 1);
      if (poll(&pfd, 1, ms) <= 0) continue;
      char chunk[512];
      const ssize_t n = read(p.out_fd_, chunk, sizeof(chunk));
      if (n <= 0) break;
      buffer.append(chunk, static_cast<size_t>(n));
      size_t pos;
      while ((pos = buffer.find('\n')) != std::string::npos) {
        const std::string line = buffer.substr(0, pos);
        buffer.erase(0, pos + 1);
        int port = 0;
        if (absl::StartsWith(line, "metrics on ") &&
            absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) {
          p.metrics_port_ = port;
        }
        if (absl::StartsWith(line, "listening on ") &&
            absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) {
          p.port_ = port;
          return p;
        }
      }
    }
    p.Kill(SIGKILL);
    return absl::DeadlineExceededError(
        absl::StrCat("lft-store printed no 'listening on' line within ",
                     absl::FormatDuration(timeout), "; got: ", buffer));
  }

  StoreProcess() = default;
  StoreProcess(StoreProcess&& o) noexcept { *this = std::move(o); }
  StoreProcess& operator=(StoreProcess&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(out_fd_, o.out_fd_);
    port_ = o.port_;
    metrics_port_ = o.metrics_port_;
    return *this;
  }
  ~StoreProcess() { Kill(SIGKILL); }

  // Sends `signal` and reaps the child (bounded: SIGKILL after 10 s).
  // Returns the wait status, or -1 if there was no child.
  int Kill(int signal) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (absl::Now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    pid_ = -1;
    if (out_fd_ >= 0) close(out_fd_);
    out_fd_ = -1;
    return status;
  }

  int port() const { return port_; }
  int metrics_port() const { return metrics_port_; }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  int metrics_port_ = 0;
};

// GET http://127.0.0.1:port/path with a 5 s bound; the whole response.
inline std::string HttpGet(int port, const std::string& path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
    if (send(fd, req.data(), req.size(), 0) > 0) {
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) out.append(buf, n);
    }
  }
  close(fd);
  return out;
}

}  // namespace testing_util
}  // namespace lft

#endif  // LFT_TESTS_INTEGRATION_STORE_PROCESS_H_
