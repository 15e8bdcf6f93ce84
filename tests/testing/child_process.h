// A child process for integration tests: started with posix_spawn, stdout
// and stderr appended to files, killed (SIGKILL) on destruction if still
// running. Every wait is bounded.
#ifndef LFT_TESTS_TESTING_CHILD_PROCESS_H_
#define LFT_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace lft::testing {

// The whole file, or "" if it cannot be read.
std::string ReadFile(const std::string& path);

class ChildProcess {
 public:
  // argv[0] is the program's path. If it cannot be started, running() is
  // false and Wait() returns -1.
  ChildProcess(const std::vector<std::string>& argv,
               const std::string& out_path, const std::string& err_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool running() const { return pid_ > 0 && !exited_; }
  pid_t pid() const { return pid_; }
  void Kill(int sig);
  // The exit code (128 + signal if killed), or -1 if still running after
  // `limit`.
  int Wait(absl::Duration limit);
  std::string out() const { return ReadFile(out_path_); }
  std::string err() const { return ReadFile(err_path_); }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  const std::string out_path_, err_path_;
};

// The body of GET http://127.0.0.1:port/path, or "" on any failure (tests
// poll /metrics until it answers).
std::string LoopbackHttpBody(int port, const std::string& path);

}  // namespace lft::testing

#endif  // LFT_TESTS_TESTING_CHILD_PROCESS_H_
