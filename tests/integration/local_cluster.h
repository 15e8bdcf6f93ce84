// A small lft cluster on loopback for integration tests: a tiny random
// GPT-NeoX teacher (3 layers x 32, BPE vocabulary 300) with its tokenizer, a
// Pile-format corpus of 40 synthetic documents, and helpers that start
// lft-store, lft-coordinator, lft-worker / lft-fake-worker processes and run
// lftctl. Every wait is bounded. The binaries come from the including
// test's LFT_*_BIN definitions.
#ifndef LFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_
#define LFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/corpus/synthetic_corpus.h"
#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "tests/integration/store_process.h"
#include "tests/testing/child_process.h"
#include "tests/unit/latent-store/test_util.h"
#include "tests/unit/worker/runner_test_util.h"
#include "worker/model/gpt_neox.h"

namespace lft {
namespace testing_util {

inline std::string ClusterDocText(int64_t i) {
  return MakeSyntheticDocument(11, i).text.substr(0, 300);
}

class LocalClusterTest : public ::testing::Test {
 protected:
  using Process = ::lft::testing::ChildProcess;
  static constexpr int kDocs = 40;
  // Every process (store, coordinator, workers, lftctl) runs with this
  // token: workers must hand their --token to the store as well.
  static constexpr char kToken[] = "cluster-token";

  void SetUp() override {
    unsetenv("LFT_AUTH_TOKEN");
    torch::set_num_threads(1);
    teacher_ = Path("teacher");
    std::filesystem::create_directories(teacher_);
    NeoXConfig c;
    c.vocab_size = 300;
    c.hidden_size = 32;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.intermediate_size = 64;
    c.max_position_embeddings = 128;
    ASSERT_TRUE(WriteRandomTeacher(teacher_, c, 5).ok());
    std::vector<std::string> texts;
    for (int i = 0; i < kDocs; ++i) texts.push_back(ClusterDocText(i));
    auto json = WriteTrainedTokenizer(teacher_, 300, texts);
    ASSERT_TRUE(json.ok()) << json.status();
    corpus_ = Path("pile.jsonl.zst");
    ASSERT_TRUE(WritePileFile(corpus_, texts).ok());
  }

  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }

  // The store (two with second_store: the coordinator then hands out
  // "a,b" and jobs are sharded over both) and the coordinator.
  void StartServices(bool second_store = false) {
    auto start_store = [&](const std::string& db) {
      auto store = StoreProcess::Start(
          LFT_STORE_BIN,
          {"--listen", "127.0.0.1:0", "--insecure-loopback", "--token", kToken,
           "--db", Path(db), "--metrics-port", "0"},
          absl::Seconds(20));
      EXPECT_TRUE(store.ok()) << store.status();
      return store.ok() ? std::make_unique<StoreProcess>(std::move(*store))
                        : nullptr;
    };
    store_ = start_store("store");
    ASSERT_NE(store_, nullptr);
    std::string store_address = store_->address();
    if (second_store) {
      store2_ = start_store("store2");
      ASSERT_NE(store2_, nullptr);
      store_address = absl::StrCat(store_address, ",", store2_->address());
    }
    coord_ = std::make_unique<Process>(
        std::vector<std::string>{
            LFT_COORDINATOR_BIN, "--db", Path("db"), "--listen", "127.0.0.1:0",
            "--port-file", Path("port"), "--insecure-loopback", "--token",
            kToken, "--heartbeat-interval-ms", "100", "--lease-ms", "1000",
            "--tick-ms", "50", "--store-address", store_address},
        Path("coordinator.out"), Path("coordinator.log"));
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline && coord_->running()) {
      std::string ports = ::lft::testing::ReadFile(Path("port"));
      const size_t sp = ports.find(' ');
      if (sp != std::string::npos &&
          absl::SimpleAtoi(ports.substr(0, sp), &port_))
        return;
      if (coord_->Wait(absl::Milliseconds(20)) >= 0) break;
    }
    FAIL() << "coordinator did not start: " << coord_->err();
  }

  std::unique_ptr<Process> StartTeacher(const std::string& name,
                                        std::vector<std::string> extra = {}) {
    return StartWorker("teacher", name, std::move(extra));
  }
  // lft-worker --role ROLE with one thread and teacher batches of 4.
  std::unique_ptr<Process> StartWorker(const std::string& role,
                                       const std::string& name,
                                       std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {LFT_WORKER_BIN,
                                     "--role",
                                     role,
                                     "--name",
                                     name,
                                     "--coordinator",
                                     absl::StrCat("127.0.0.1:", port_),
                                     "--insecure-loopback",
                                     "--token",
                                     kToken,
                                     "--threads",
                                     "1",
                                     "--batch-sequences",
                                     "4"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Process>(argv, Path(name + ".out"),
                                     Path(name + ".log"));
  }
  std::unique_ptr<Process> StartFake(const std::string& role,
                                     const std::string& name) {
    return std::make_unique<Process>(
        std::vector<std::string>{
            LFT_FAKE_WORKER_BIN, "--token", kToken, "--role", role, "--name",
            name, "--coordinator", absl::StrCat("127.0.0.1:", port_)},
        Path(name + ".out"), Path(name + ".log"));
  }

  // lftctl with a bounded wait; returns {exit code, stdout + stderr}.
  std::pair<int, std::string> Ctl(std::vector<std::string> args,
                                  absl::Duration limit = absl::Seconds(30)) {
    static int n = 0;
    const std::string out = Path(absl::StrCat("ctl", n, ".out"));
    const std::string err = Path(absl::StrCat("ctl", n++, ".err"));
    std::vector<std::string> argv = {LFT_LFTCTL_BIN, "--token", kToken,
                                     "--server",
                                     absl::StrCat("127.0.0.1:", port_)};
    argv.insert(argv.end(), args.begin(), args.end());
    Process p(argv, out, err);
    const int code = p.Wait(limit);
    return {code, p.out() + p.err()};
  }

  // The /metrics body of a worker started with --metrics-port 0 (its port
  // from the "metrics served port=N" log line, waited for up to 10 s: a
  // worker may still be starting when a fast job ends); "" when it has none.
  std::string ScrapeWorkerMetrics(Process* worker) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string log = worker->err();
    size_t at = log.find("metrics served port=");
    while (at == std::string::npos && absl::Now() < deadline &&
           worker->running()) {
      absl::SleepFor(absl::Milliseconds(20));
      log = worker->err();
      at = log.find("metrics served port=");
    }
    if (at == std::string::npos) return "";
    int port = 0;
    if (!absl::SimpleAtoi(
            log.substr(at + 20, log.find_first_of(" \n", at + 20) - at - 20),
            &port))
      return "";
    return ::lft::testing::LoopbackHttpBody(port, "/metrics");
  }

  // A store client with the token (of the second store with second).
  std::unique_ptr<RemotePairStore> Client(bool second = false) {
    RemotePairStoreOptions o;
    o.credentials.token = kToken;
    return RemotePairStore::Connect(
               second ? store2_->address() : store_->address(), o)
        .value();
  }

  TempDir dir_;
  std::string teacher_, corpus_;
  int port_ = 0;
  std::unique_ptr<StoreProcess> store_;
  std::unique_ptr<StoreProcess> store2_;  // StartServices(true) only
  std::unique_ptr<Process> coord_;
};

}  // namespace testing_util
}  // namespace lft

#endif  // LFT_TESTS_INTEGRATION_LOCAL_CLUSTER_H_
