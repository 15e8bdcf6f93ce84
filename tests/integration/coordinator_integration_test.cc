// lft-coordinator, lft-fake-worker and lftctl as real processes on
// 127.0.0.1: full job, a worker killed with SIGKILL mid-task, a coordinator
// killed and restarted mid-job, cancellation, precise errors through lftctl
// (exit codes and messages), bearer tokens, TLS and /metrics. Every wait is
// bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/testing/child_process.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

using Process = ::lft::testing::ChildProcess;
using ::lft::testing::ReadFile;

struct CtlResult {
  int code;
  std::string out;
  std::string err;
};

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string HttpGet(int port, const std::string& path) {
  return ::lft::testing::LoopbackHttpBody(port, path);
}

class CoordinatorIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LFT_AUTH_TOKEN");
    // 4 shards of 25 documents.
    std::string text;
    for (int i = 0; i < 100; ++i)
      text += absl::StrCat("{\"text\": \"doc ", i, "\"}\n");
    std::string z(ZSTD_compressBound(text.size()), '\0');
    z.resize(ZSTD_compress(z.data(), z.size(), text.data(), text.size(), 1));
    corpus_ = dir_.path() + "/pile.jsonl.zst";
    std::ofstream(corpus_, std::ios::binary) << z;
    teacher_ = dir_.path() + "/teacher";
    std::filesystem::create_directories(teacher_);
    std::ofstream(teacher_ + "/config.json")
        << R"({"num_hidden_layers": 24, "max_position_embeddings": 2048})";
    spec_ = dir_.path() + "/spec.json";
    std::ofstream(spec_) << absl::StrCat(
        R"({"name": "it-job", "teacher": {"path": ")", teacher_,
        R"("}, "corpus": {"jsonlZstPaths": [")", corpus_,
        R"("], "documentsPerShard": 25}, "block": {"firstLayer": 6, "endLayer": 12},)",
        R"( "training": {"maxSteps": 30, "checkpointEverySteps": 10},)",
        R"( "evaluation": {"maxSequences": 10, "heldoutPaths": [")", corpus_,
        R"("]}})");
  }

  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }

  // Starts the coordinator and waits (bounded) for its port file.
  std::unique_ptr<Process> StartCoordinator(std::vector<std::string> extra,
                                            int port = 0) {
    std::filesystem::remove(Path("port"));
    std::vector<std::string> argv = {
        LFT_COORDINATOR_BIN, "--db", Path("db"), "--listen",
        absl::StrCat("127.0.0.1:", port), "--port-file", Path("port"),
        "--heartbeat-interval-ms", "100", "--lease-ms", "1000", "--tick-ms",
        "50",
        // lft-fake-worker needs no weights; the
        // fixture's teacher has none.
        "--skip-input-checks"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = std::make_unique<Process>(argv, Path("coordinator.out"),
                                       Path("coordinator.log"));
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline && p->running()) {
      std::vector<std::string> ports =
          absl::StrSplit(ReadFile(Path("port")), ' ');
      if (ports.size() == 2 && absl::SimpleAtoi(ports[0], &port_) &&
          absl::SimpleAtoi(absl::StripAsciiWhitespace(ports[1]),
                           &metrics_port_)) {
        return p;
      }
      if (p->Wait(absl::Milliseconds(20)) >= 0) break;
    }
    ADD_FAILURE() << "coordinator did not start: " << p->err();
    return p;
  }

  std::unique_ptr<Process> StartWorker(const std::string& role,
                                       const std::string& name,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {LFT_FAKE_WORKER_BIN,
                                     "--role",
                                     role,
                                     "--name",
                                     name,
                                     "--coordinator",
                                     absl::StrCat("127.0.0.1:", port_),
                                     "--record",
                                     Path("completions.log")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, Path(name + ".out"),
                                     Path(name + ".log"));
  }

  CtlResult Ctl(std::vector<std::string> args,
                absl::Duration limit = absl::Seconds(30),
                const std::string& server = "") {
    static int n = 0;
    const std::string out = Path(absl::StrCat("ctl", n, ".out"));
    const std::string err = Path(absl::StrCat("ctl", n++, ".err"));
    std::vector<std::string> argv = {
        LFT_LFTCTL_BIN, "--server",
        server.empty() ? absl::StrCat("127.0.0.1:", port_) : server};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, out, err);
    const int code = p.Wait(limit);
    if (code < 0)
      ADD_FAILURE() << "lftctl " << args[0] << " did not finish in time";
    return {code, p.out(), p.err()};
  }

  // Waits (bounded) until `lftctl get` shows `state`.
  bool WaitForState(const std::string& job, const std::string& state,
                    absl::Duration limit) {
    const absl::Time deadline = absl::Now() + limit;
    while (absl::Now() < deadline) {
      if (absl::StrContains(Ctl({"get", job}).out,
                            absl::StrCat("  ", state, "\n")))
        return true;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return false;
  }

  // Task id -> accepted completions, from the fake workers' record file.
  std::map<std::string, int> Completions() {
    std::map<std::string, int> out;
    for (absl::string_view line : absl::StrSplit(
             ReadFile(Path("completions.log")), '\n', absl::SkipEmpty())) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      ++out[f[0]];
    }
    return out;
  }

  TempDir dir_;
  std::string corpus_, teacher_, spec_;
  int port_ = 0;
  int metrics_port_ = -1;
};

TEST_F(CoordinatorIntegrationTest,
       TwoTeachersRunAllPhasesAndMetricsPassPromtool) {
  auto coord = StartCoordinator({"--insecure-loopback", "--metrics-port", "0",
                                 "--metrics-host", "127.0.0.1"});
  auto t1 = StartWorker("teacher", "t1");
  auto t2 = StartWorker("teacher", "t2");
  auto tr = StartWorker("trainer", "tr");
  auto ev = StartWorker("evaluator", "ev");
  CtlResult submit = Ctl({"submit", spec_, "--trainer-ranks", "1"});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  EXPECT_EQ(job, "j-1");
  CtlResult watch = Ctl({"watch", job}, absl::Seconds(60));
  EXPECT_EQ(watch.code, 0) << watch.out << watch.err;
  for (const char* s : {"EXTRACTING", "TRAINING", "EVALUATING", "SUCCEEDED"}) {
    EXPECT_THAT(watch.out, HasSubstr(s));
  }
  EXPECT_THAT(watch.out, HasSubstr("corpus sharded into 4 extraction task(s)"));
  CtlResult get = Ctl({"get", job});
  EXPECT_THAT(get.out, HasSubstr("100%  30/30 steps"));
  auto done = Completions();
  EXPECT_EQ(done.size(), 6u);  // 4 shards + 1 trainer + 1 evaluation
  for (const auto& [task, n] : done) EXPECT_EQ(n, 1) << task;
  CtlResult list = Ctl({"list", "--state", "succeeded"});
  EXPECT_THAT(list.out, HasSubstr("it-job"));

  const std::string metrics = HttpGet(metrics_port_, "/metrics");
  EXPECT_THAT(metrics,
              HasSubstr("lft_coordinator_jobs{state=\"SUCCEEDED\"} 1"));
  EXPECT_THAT(metrics,
              HasSubstr("lft_coordinator_workers{role=\"teacher\"} 2"));
  EXPECT_THAT(
      metrics,
      HasSubstr("lft_coordinator_rpcs_total{code=\"ok\",method=\"Submit\"} 1"));
  if (system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed";
  }
  std::ofstream(Path("metrics.txt")) << metrics;
  const std::string cmd =
      absl::StrCat("promtool check metrics < ", Path("metrics.txt"), " > ",
                   Path("promtool.out"), " 2>&1");
  EXPECT_EQ(system(cmd.c_str()), 0) << ReadFile(Path("promtool.out"));
}

TEST_F(CoordinatorIntegrationTest,
       KilledWorkerLosesLeaseAndEveryShardCompletesOnce) {
  auto coord = StartCoordinator({"--insecure-loopback"});
  // Slow teachers: 25 documents x 40 ms = 1 s per shard.
  auto t1 = StartWorker("teacher", "t1", {"--ms-per-document", "40"});
  auto t2 = StartWorker("teacher", "t2", {"--ms-per-document", "40"});
  auto tr = StartWorker("trainer", "tr");
  auto ev = StartWorker("evaluator", "ev");
  CtlResult submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  absl::SleepFor(absl::Milliseconds(500));  // both teachers are mid-shard
  t1->Kill(SIGKILL);
  EXPECT_EQ(t1->Wait(absl::Seconds(5)), 128 + SIGKILL);
  CtlResult watch = Ctl({"watch", job}, absl::Seconds(60));
  EXPECT_EQ(watch.code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("lost its lease on task"));
  auto done = Completions();
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(done[absl::StrCat(job, "-x", s)], 1) << "shard " << s;
  }
}

TEST_F(CoordinatorIntegrationTest, CoordinatorRestartMidJobAndJobCompletes) {
  const int port = FreePort();
  auto coord = StartCoordinator({"--insecure-loopback"}, port);
  auto t1 = StartWorker("teacher", "t1", {"--ms-per-document", "20"});
  auto t2 = StartWorker("teacher", "t2", {"--ms-per-document", "20"});
  auto tr = StartWorker("trainer", "tr", {"--ms-per-step", "60"});
  auto ev = StartWorker("evaluator", "ev");
  CtlResult submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  // A watch started before the crash reconnects and resumes after the last
  // event it saw.
  Process watch({LFT_LFTCTL_BIN, "--server", absl::StrCat("127.0.0.1:", port),
                 "watch", job},
                Path("watch.out"), Path("watch.err"));
  absl::SleepFor(absl::Milliseconds(700));
  coord->Kill(SIGKILL);
  ASSERT_EQ(coord->Wait(absl::Seconds(5)), 128 + SIGKILL);
  absl::SleepFor(absl::Milliseconds(300));
  coord = StartCoordinator({"--insecure-loopback"}, port);
  // And a clean restart (SIGTERM) while the trainer runs.
  ASSERT_TRUE(WaitForState(job, "TRAINING", absl::Seconds(30)));
  coord->Kill(SIGTERM);
  ASSERT_EQ(coord->Wait(absl::Seconds(10)), 0);
  coord = StartCoordinator({"--insecure-loopback"}, port);
  EXPECT_EQ(watch.Wait(absl::Seconds(60)), 0)
      << watch.out() << watch.err() << coord->err();
  EXPECT_THAT(watch.out(), HasSubstr("SUCCEEDED"));
  // Each event is printed once although the stream was re-opened.
  const std::string out = watch.out();
  size_t n = 0;
  for (size_t pos = out.find("submitted"); pos != std::string::npos;
       pos = out.find("submitted", pos + 1)) {
    ++n;
  }
  EXPECT_EQ(n, 1u) << out;
  auto done = Completions();
  for (int s = 0; s < 4; ++s) {
    EXPECT_GE(done[absl::StrCat(job, "-x", s)], 1) << "shard " << s;
    EXPECT_LE(done[absl::StrCat(job, "-x", s)], 1) << "shard " << s;
  }
}

TEST_F(CoordinatorIntegrationTest, LostTrainerRankReformsGroupAndJobCompletes) {
  auto coord = StartCoordinator({"--insecure-loopback"});
  auto t1 = StartWorker("teacher", "t1");
  auto r1 = StartWorker("trainer", "r1", {"--ms-per-step", "100"});
  auto r2 = StartWorker("trainer", "r2", {"--ms-per-step", "100"});
  auto ev = StartWorker("evaluator", "ev");
  CtlResult submit = Ctl({"submit", spec_, "--trainer-ranks", "2"});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  ASSERT_TRUE(WaitForState(job, "TRAINING", absl::Seconds(20)));
  // Past the checkpoint at step 10 (reported within 0.5 s).
  absl::SleepFor(absl::Milliseconds(1600));
  r2->Kill(SIGKILL);
  ASSERT_EQ(r2->Wait(absl::Seconds(5)), 128 + SIGKILL);
  auto r3 = StartWorker("trainer", "r3", {"--ms-per-step", "100"});
  CtlResult watch = Ctl({"watch", job}, absl::Seconds(60));
  EXPECT_EQ(watch.code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("trainer group re-formed as generation 2"));
  EXPECT_THAT(watch.out, HasSubstr("resuming from fake://"));
  EXPECT_THAT(r1->err(), HasSubstr("task stopped"));
}

TEST_F(CoordinatorIntegrationTest, CancelStopsWorkersWithinSeconds) {
  auto coord = StartCoordinator({"--insecure-loopback"});
  auto t1 = StartWorker("teacher", "t1", {"--ms-per-document", "1000"});
  CtlResult submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.code, 0) << submit.err;
  const std::string job(absl::StripAsciiWhitespace(submit.out));
  ASSERT_TRUE(WaitForState(job, "EXTRACTING", absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time start = absl::Now();
  CtlResult cancel = Ctl({"cancel", job});
  EXPECT_EQ(cancel.code, 0) << cancel.err;
  EXPECT_THAT(cancel.out, HasSubstr("CANCELLED"));
  while (!absl::StrContains(t1->err(), "task stopped") &&
         absl::Now() - start < absl::Seconds(5)) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(t1->err(), HasSubstr("task stopped"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  CtlResult watch = Ctl({"watch", job});
  EXPECT_EQ(watch.code, 1);
  EXPECT_THAT(watch.err, HasSubstr("job " + job + " CANCELLED"));
  CtlResult again = Ctl({"cancel", job});
  EXPECT_EQ(again.code, 5);
  EXPECT_THAT(again.err, HasSubstr("failed precondition: job " + job +
                                   " already finished (CANCELLED)"));
}

TEST_F(CoordinatorIntegrationTest,
       MalformedSpecsAndUnknownJobsGetPreciseErrors) {
  auto coord = StartCoordinator({"--insecure-loopback"});
  CtlResult r = Ctl({"submit", spec_, "--block", "20:30"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(
      r.err, HasSubstr("invalid argument: invalid job spec (1 problem): block: "
                       "block [20, 30) is outside the teacher's 24 layers"));
  r = Ctl({"submit", spec_, "--name", "Bad_Name", "--sequence-length", "1"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("(2 problems): name: \"Bad_Name\""));
  EXPECT_THAT(r.err,
              HasSubstr("; sequence_length: must be in [2, 65536], got 1"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1)
      << "one line: " << r.err;
  std::ofstream(Path("broken.json")) << "{\"name\": ";
  r = Ctl({"submit", Path("broken.json")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("broken.json: job spec is not valid JSON"));
  // YAML specs: the same validation, flags override, errors name the line.
  std::ofstream(Path("spec.yaml"))
      << absl::StrCat("name: yaml-job\nteacher: {path: ", teacher_,
                      "}\ncorpus:\n", "  jsonl_zst_paths: [", corpus_,
                      "]\nblock: {first_layer: 6, ", "end_layer: 12}\n");
  r = Ctl({"submit", Path("spec.yaml"), "--block", "20:30"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("block: block [20, 30) is outside the "
                               "teacher's 24 layers"));
  std::ofstream(Path("broken.yaml")) << "name: x\nblock:\n  first: 1\n";
  r = Ctl({"submit", Path("broken.yaml")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("broken.yaml: job spec is not valid YAML for "
                               "lft.v1.JobSpec: line 3, column 3: "
                               "block.first: unknown field"));
  r = Ctl({"submit", spec_, "--block", "6"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--block: \"6\" is not FIRST:END"));
  r = Ctl({"get", "j-404"});
  EXPECT_EQ(r.code, 3);
  EXPECT_THAT(r.err, HasSubstr("not found: no job has id \"j-404\""));
  r = Ctl({"watch", "j-404"});
  EXPECT_EQ(r.code, 3);
  r = Ctl({"cancel", "j-404"});
  EXPECT_EQ(r.code, 3);
  r = Ctl({"list"}, absl::Seconds(30), absl::StrCat("127.0.0.1:", FreePort()));
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, HasSubstr("unavailable:"));
}

TEST_F(CoordinatorIntegrationTest, BearerTokenIsRequiredAndChecked) {
  auto coord = StartCoordinator({"--insecure-loopback", "--token", "s3cret"});
  CtlResult r = Ctl({"list"});
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(
      r.err,
      HasSubstr("unauthenticated: missing bearer token: pass --token or set "
                "LFT_AUTH_TOKEN"));
  r = Ctl({"--token", "wrong", "list"});
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, HasSubstr("unauthenticated: invalid bearer token"));
  r = Ctl({"--token", "s3cret", "list"});
  EXPECT_EQ(r.code, 0) << r.err;
  // A worker with a wrong token stops with the reason.
  auto w = StartWorker("teacher", "bad", {"--token", "nope"});
  EXPECT_EQ(w->Wait(absl::Seconds(10)), 4);
  EXPECT_THAT(w->err(), HasSubstr("invalid bearer token"));
}

TEST_F(CoordinatorIntegrationTest, InsecureModeRefusesNonLoopbackAddress) {
  Process p({LFT_COORDINATOR_BIN, "--db", Path("db"), "--listen", "0.0.0.0:0",
             "--insecure-loopback"},
            Path("c.out"), Path("c.err"));
  EXPECT_EQ(p.Wait(absl::Seconds(10)), 2);
  EXPECT_THAT(
      p.err(),
      HasSubstr("--insecure-loopback refuses to listen on non-loopback"));
  Process q(
      {LFT_COORDINATOR_BIN, "--db", Path("db"), "--listen", "127.0.0.1:0"},
      Path("q.out"), Path("q.err"));
  EXPECT_EQ(q.Wait(absl::Seconds(10)), 2);
  EXPECT_THAT(q.err(), HasSubstr("pass --tls-cert and --tls-key"));
}

TEST_F(CoordinatorIntegrationTest, TlsWithTokenServesLftctl) {
  if (system("command -v openssl >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "no openssl";
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
      Path("key.pem"), " -out ", Path("cert.pem"), " > ", Path("openssl.log"),
      " 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0) << ReadFile(Path("openssl.log"));
  auto coord = StartCoordinator({"--tls-cert", Path("cert.pem"), "--tls-key",
                                 Path("key.pem"), "--token", "s3cret"});
  // An IP literal (the certificate has IP:127.0.0.1): no DNS lookup.
  const std::string server = absl::StrCat("127.0.0.1:", port_);
  CtlResult r = Ctl({"--tls-ca", Path("cert.pem"), "--token", "s3cret", "list"},
                    absl::Seconds(30), server);
  EXPECT_EQ(r.code, 0) << r.err;
  r = Ctl({"--tls-ca", Path("cert.pem"), "--token", "wrong", "list"},
          absl::Seconds(30), server);
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, HasSubstr("invalid bearer token"));
  r = Ctl({"--tls-ca", Path("cert.pem"), "list"}, absl::Seconds(30), server);
  EXPECT_EQ(r.code, 4);
  EXPECT_THAT(r.err, HasSubstr("missing bearer token"));
  // A plaintext client cannot talk to the TLS server.
  r = Ctl({"--insecure", "--token", "s3cret", "--timeout-s", "3", "list"},
          absl::Seconds(30), server);
  EXPECT_EQ(r.code, 4);
  // And a TLS job runs with a TLS worker.
  auto w = StartWorker("teacher", "tls-t",
                       {"--tls-ca", Path("cert.pem"), "--token", "s3cret",
                        "--coordinator", server});
  r = Ctl({"--tls-ca", Path("cert.pem"), "--token", "s3cret", "submit", spec_},
          absl::Seconds(30), server);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string job(absl::StripAsciiWhitespace(r.out));
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline &&
         !absl::StrContains(Ctl({"--tls-ca", Path("cert.pem"), "--token",
                                 "s3cret", "get", job},
                                absl::Seconds(30), server)
                                .out,
                            "TRAINING")) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Completions().size(), 4u);  // every shard, through TLS
}

}  // namespace
}  // namespace lft

namespace lft {
namespace {

// Regression: a FIFO as a corpus path blocked the whole coordinator (other
// jobs stayed PENDING, leases stopped expiring, SIGTERM did nothing). Now
// the FIFO job fails at --planning-deadline-ms naming the cause, another
// job completes meanwhile and SIGTERM stops the process within seconds.
TEST_F(CoordinatorIntegrationTest, FifoCorpusFailsAtPlanningDeadline) {
  const std::string fifo = Path("fifo.jsonl.zst");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  const std::string fifo_spec = Path("fifo-spec.json");
  std::ofstream(fifo_spec) << absl::StrCat(
      R"({"name": "fifo-job", "teacher": {"path": ")", teacher_,
      R"("}, "corpus": {"jsonlZstPaths": [")", fifo,
      R"("]}, "block": {"firstLayer": 6, "endLayer": 12},)",
      R"( "training": {"maxSteps": 30, "checkpointEverySteps": 10},)",
      R"( "evaluation": {"maxSequences": 10, "heldoutPaths": [")", fifo,
      R"("]}})");
  auto coord = StartCoordinator(
      {"--insecure-loopback", "--planning-deadline-ms", "3000"});
  auto t1 = StartWorker("teacher", "t1");
  auto tr = StartWorker("trainer", "tr");
  auto ev = StartWorker("evaluator", "ev");
  CtlResult stuck = Ctl({"submit", fifo_spec});
  ASSERT_EQ(stuck.code, 0) << stuck.err;
  const std::string stuck_job(absl::StripAsciiWhitespace(stuck.out));
  CtlResult other = Ctl({"submit", spec_, "--trainer-ranks", "1"});
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string other_job(absl::StripAsciiWhitespace(other.out));
  CtlResult watch = Ctl({"watch", other_job}, absl::Seconds(60));
  EXPECT_EQ(watch.code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("SUCCEEDED"));
  CtlResult failed = Ctl({"watch", stuck_job}, absl::Seconds(30));
  EXPECT_NE(failed.code, 0) << failed.out << failed.err;
  EXPECT_THAT(failed.out + failed.err,
              HasSubstr("planning the corpus did not finish within 3000 ms"));
  const absl::Time stop = absl::Now();
  coord->Kill(SIGTERM);
  EXPECT_EQ(coord->Wait(absl::Seconds(10)), 0) << coord->err();
  EXPECT_LT(absl::Now() - stop, absl::Seconds(5));
}

}  // namespace
}  // namespace lft
