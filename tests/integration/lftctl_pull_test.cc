// `lftctl pull` (CheckpointService) against a real lft-store process on
// 127.0.0.1 (with a bearer token), directly and through a real
// lft-coordinator: listing, the newest checkpoint, a named blob, a download
// resumed from a kept partial file (and a bad one refused), the exit codes
// and messages scripts see for unknown jobs and names, and, against a fake
// server that declares a wrong sha256, that nothing is left at --out.
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "lft/v1/checkpoint.grpc.pb.h"
#include "lftctl/lftctl.h"
#include "tests/integration/store_process.h"
#include "tests/testing/child_process.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using ::lft::testing::ChildProcess;
using ::lft::testing::ReadFile;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::StoreProcess;
using testing_util::TempDir;

constexpr char kToken[] = "pull-token";

// The sha256 of "abc".
constexpr char kShaAbc[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

struct CtlResult {
  int code;
  std::string out;
  std::string err;
};

class LftctlPullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LFT_AUTH_TOKEN");
    unsetenv("LFT_STORE_ADDRESS");
    auto store =
        StoreProcess::Start(LFT_STORE_BINARY,
                            {"--listen", "127.0.0.1:0", "--insecure-loopback",
                             "--token", kToken, "--db", dir_.Sub("store")},
                            absl::Seconds(20));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::make_unique<StoreProcess>(std::move(*store));
    RemotePairStoreOptions o;
    o.credentials.token = kToken;
    o.checkpoint_chunk_bytes = 64 << 10;  // several chunks per blob
    client_ = RemotePairStore::Connect(store_->address(), o).value();
    JobConfig c;
    c.hidden = 8;
    ASSERT_TRUE(client_->CreateJob("j-1", c).ok());
    ASSERT_TRUE(client_->CreateJob("j-empty", c).ok());
    step10_ = Blob(300000, 1);
    step20_ = Blob(200001, 2);
    for (const auto& [name, data] :
         std::vector<std::pair<std::string, std::string>>{
             {"step-10", step10_},
             {"step-20", step20_},
             {"report-eval", "{}"}}) {
      ASSERT_TRUE(client_->PutCheckpoint("j-1", name, data, "").ok());
      absl::SleepFor(absl::Milliseconds(5));  // distinct creation times
    }
  }

  static std::string Blob(size_t n, int seed) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i)
      s[i] = static_cast<char>((i * 131 + seed * 7) & 0xff);
    return s;
  }

  CtlResult Ctl(std::vector<std::string> args, bool with_store = true) {
    std::vector<std::string> argv = {LFT_LFTCTL_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    if (with_store) {
      argv.push_back("--store");
      argv.push_back(store_->address());
    }
    static int n = 0;
    const std::string base = dir_.Sub(absl::StrCat("ctl", n++));
    ChildProcess p(argv, base + ".out", base + ".err");
    const int code = p.Wait(absl::Seconds(30));
    EXPECT_GE(code, 0) << "lftctl did not finish in time";
    return {code, p.out(), p.err()};
  }

  TempDir dir_;
  std::unique_ptr<StoreProcess> store_;
  std::unique_ptr<RemotePairStore> client_;
  std::string step10_, step20_;
};

// True if no "PATH.partial*" file is left beside `path`.
bool NoPartialFiles(const std::string& path) {
  const fs::path p(path);
  for (const auto& e : fs::directory_iterator(p.parent_path())) {
    if (absl::StartsWith(e.path().filename().string(),
                         p.filename().string() + ".partial")) {
      return false;
    }
  }
  return true;
}

TEST_F(LftctlPullTest, ListShowsNamesSizesDigestsAndTimes) {
  CtlResult r = Ctl({"pull", "j-1", "--list", "--token", kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("NAME"));
  EXPECT_THAT(r.out, HasSubstr("SHA256"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("step-10 +300000 [0-9a-f]{64} "
                                              "20[0-9-]+T[0-9:]+Z"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("step-20 +200001 "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("report-eval +2 "));
}

TEST_F(LftctlPullTest, PullsNewestCheckpointAndNamedBlobsVerified) {
  const std::string out = dir_.Sub("latest.bin");
  CtlResult r = Ctl({"pull", "j-1", "--out", out, "--token", kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  // The newest checkpoint, not the report written after it.
  EXPECT_TRUE(ReadFile(out) == step20_);
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(out, "  200001 bytes  sha256 ")));
  EXPECT_TRUE(NoPartialFiles(out));

  const std::string named = dir_.Sub("s10.bin");
  r = Ctl({"pull", "j-1", "step-10", "--out", named, "--token", kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(named) == step10_);
  r = Ctl({"pull", "j-1", "report-eval", "--out", dir_.Sub("r.json"), "--token",
           kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(ReadFile(dir_.Sub("r.json")), "{}");

  // The address and token may come from the environment.
  setenv("LFT_STORE_ADDRESS", store_->address().c_str(), 1);
  setenv("LFT_AUTH_TOKEN", kToken, 1);
  r = Ctl({"pull", "j-1", "step-10", "--out", dir_.Sub("env.bin")},
          /*with_store=*/false);
  unsetenv("LFT_STORE_ADDRESS");
  unsetenv("LFT_AUTH_TOKEN");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(dir_.Sub("env.bin")) == step10_);
}

TEST_F(LftctlPullTest, StoreErrorsGetScriptableExitCodes) {
  const std::string out = dir_.Sub("x.bin");
  CtlResult r = Ctl({"pull", "nope", "--out", out, "--token", kToken});
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("lftctl: not found: store 127.0.0.1:"));
  EXPECT_THAT(r.err, HasSubstr("job 'nope' is not registered with the store"));
  r = Ctl({"pull", "j-1", "step-99", "--out", out, "--token", kToken});
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("job 'j-1' has no blob named 'step-99'"));
  r = Ctl({"pull", "j-empty", "--out", out, "--token", kToken});
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("job 'j-empty' has no checkpoint in store"));
  EXPECT_FALSE(fs::exists(out));
  r = Ctl({"pull", "j-1", "--out", out});
  EXPECT_EQ(r.code, kExitUnavailable);
  EXPECT_THAT(r.err, HasSubstr("unauthenticated: store 127.0.0.1:"));
  EXPECT_THAT(r.err, HasSubstr("missing bearer token"));
  r = Ctl({"pull", "j-1", "--out", out, "--token", "wrong"});
  EXPECT_EQ(r.code, kExitUnavailable);
  EXPECT_THAT(r.err, HasSubstr("invalid bearer token"));
  r = Ctl({"pull", "j-1", "a", "b", "--token", kToken});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_THAT(r.err, HasSubstr("pull takes JOB [NAME], or JOB --list"));
  // Without --store and LFT_STORE_ADDRESS: the coordinator's default
  // address.
  r = Ctl({"pull", "j-1", "--token", kToken, "--timeout-s", "3"},
          /*with_store=*/false);
  EXPECT_NE(r.code, kExitOk);
  EXPECT_THAT(r.err, HasSubstr("coordinator 127.0.0.1:7070"));
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(LftctlPullTest, ResumesFromTheBytesAKeptPartialFileHolds) {
  auto list = client_->ListCheckpoints("j-1");
  ASSERT_TRUE(list.ok()) << list.status();
  std::string sha10;
  for (const CheckpointInfo& c : *list) {
    if (c.name == "step-10") sha10 = c.sha256;
  }
  ASSERT_EQ(sha10.size(), 64u);
  const std::string out = dir_.Sub("resumed.bin");
  const std::string partial =
      absl::StrCat(out, ".partial-", sha10.substr(0, 16));
  std::ofstream(partial, std::ios::binary) << step10_.substr(0, 100000);
  CtlResult r =
      Ctl({"pull", "j-1", "step-10", "--out", out, "--token", kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("resuming step-10 from byte 100000 of 300000"));
  EXPECT_TRUE(ReadFile(out) == step10_);
  EXPECT_TRUE(NoPartialFiles(out));

  // A kept file whose bytes are not the blob's: refused, removed, and the
  // next pull starts over.
  const std::string bad = dir_.Sub("bad.bin");
  const std::string bad_partial =
      absl::StrCat(bad, ".partial-", sha10.substr(0, 16));
  std::ofstream(bad_partial, std::ios::binary) << std::string(1000, 'x');
  r = Ctl({"pull", "j-1", "step-10", "--out", bad, "--token", kToken});
  EXPECT_EQ(r.code, kExitDataLoss) << r.err;
  EXPECT_THAT(r.err, HasSubstr("(the kept partial file was bad)"));
  EXPECT_FALSE(fs::exists(bad));
  EXPECT_TRUE(NoPartialFiles(bad));
  r = Ctl({"pull", "j-1", "step-10", "--out", bad, "--token", kToken});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(bad) == step10_);
}

// Through lft-coordinator's CheckpointService, which relays from the store
// named by --store-address.
TEST_F(LftctlPullTest, PullsThroughTheCoordinator) {
  // A job the coordinator knows: its first job is "j-1", whose blobs the
  // store holds (SetUp). It stays PENDING: no workers.
  ASSERT_EQ(
      std::system(absl::StrCat("printf '{\"text\": \"a\"}\\n' | zstd -q -o ",
                               dir_.Sub("c.jsonl.zst"))
                      .c_str()),
      0);
  std::filesystem::create_directories(dir_.Sub("teacher"));
  std::ofstream(dir_.Sub("teacher/config.json"))
      << R"({"num_hidden_layers": 24, "max_position_embeddings": 2048})";
  std::ofstream(dir_.Sub("spec.json")) << absl::StrCat(
      R"({"name": "pull", "teacher": {"path": ")", dir_.Sub("teacher"),
      R"("}, "corpus": {"jsonlZstPaths": [")", dir_.Sub("c.jsonl.zst"),
      R"("]}, "block": {"firstLayer": 6, "endLayer": 12},)",
      R"( "evaluation": {"heldoutPaths": [")", dir_.Sub("c.jsonl.zst"),
      R"("]}})");
  // The teacher is a config.json alone: submit's file checks stay off.
  auto start = [&](const std::string& name, std::vector<std::string> extra) {
    std::vector<std::string> argv = {
        LFT_COORDINATOR_BIN,     "--db",
        dir_.Sub(name),          "--listen",
        "127.0.0.1:0",           "--insecure-loopback",
        "--skip-input-checks",   "--port-file",
        dir_.Sub(name + ".port")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = std::make_unique<ChildProcess>(argv, dir_.Sub(name + ".out"),
                                            dir_.Sub(name + ".err"));
    int port = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline && p->running() && port == 0) {
      std::vector<std::string> parts =
          absl::StrSplit(ReadFile(dir_.Sub(name + ".port")), ' ');
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &port)) {
        port = 0;
        absl::SleepFor(absl::Milliseconds(20));
      }
    }
    EXPECT_GT(port, 0) << p->err();
    return std::make_pair(std::move(p), absl::StrCat("127.0.0.1:", port));
  };
  auto [coordinator, address] =
      start("coordinator",
            {"--store-address", store_->address(), "--store-token", kToken});
  CtlResult r = Ctl({"--server", address, "submit", dir_.Sub("spec.json")},
                    /*with_store=*/false);
  ASSERT_EQ(r.code, 0) << r.err;
  ASSERT_EQ(r.out, "j-1\n");

  r = Ctl({"--server", address, "pull", "j-1", "--list"}, false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("step-10 +300000 [0-9a-f]{64}"));
  const std::string out = dir_.Sub("via-coordinator.bin");
  r = Ctl({"--server", address, "pull", "j-1", "--out", out}, false);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(ReadFile(out) == step20_);  // the newest checkpoint

  r = Ctl({"--server", address, "pull", "j-9", "--list"}, false);
  EXPECT_EQ(r.code, kExitNotFound);
  EXPECT_THAT(r.err, HasSubstr("not found: coordinator 127.0.0.1:"));
  EXPECT_THAT(r.err, HasSubstr("no job has id \"j-9\""));

  // Without --store-address the coordinator cannot read checkpoints.
  auto [bare, bare_address] = start("bare", {});
  r = Ctl({"--server", bare_address, "submit", dir_.Sub("spec.json")}, false);
  ASSERT_EQ(r.code, 0) << r.err;
  r = Ctl({"--server", bare_address, "pull", "j-1", "--list"}, false);
  EXPECT_EQ(r.code, kExitFailedPrecondition);
  EXPECT_THAT(r.err, HasSubstr("runs without --store-address"));
}

// Serves one blob "abc" whose declared sha256 (in the listing and the first
// chunk) is `declared`.
class FakeCheckpoints : public lft::v1::CheckpointService::Service {
 public:
  explicit FakeCheckpoints(std::string declared)
      : declared_(std::move(declared)) {}
  grpc::Status List(grpc::ServerContext*,
                    const lft::v1::ListJobCheckpointsRequest*,
                    lft::v1::ListCheckpointsResponse* r) override {
    auto* c = r->add_checkpoints();
    c->set_name("step-1");
    c->set_bytes(3);
    c->set_sha256(declared_);
    c->set_created_unix_ms(1);
    return grpc::Status::OK;
  }
  grpc::Status Pull(grpc::ServerContext*, const lft::v1::PullCheckpointRequest*,
                    grpc::ServerWriter<lft::v1::CheckpointChunk>* w) override {
    lft::v1::CheckpointChunk chunk;
    chunk.set_name("step-1");
    chunk.set_sha256(declared_);
    chunk.set_total_bytes(3);
    chunk.set_data("ab");
    w->Write(chunk);
    chunk.Clear();
    chunk.set_offset(2);
    chunk.set_data("c");
    w->Write(chunk);
    return grpc::Status::OK;
  }

 private:
  const std::string declared_;
};

TEST(LftctlPullDigestTest, MismatchRemovesPartialFileAndKeepsOldOne) {
  TempDir dir;
  for (const std::string& declared :
       {std::string(64, '0'), std::string(kShaAbc)}) {
    FakeCheckpoints fake(declared);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(&fake);
    auto server = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    const std::string out = dir.Sub("ckpt.bin");
    std::ofstream(out) << "old";
    std::ostringstream o, e;
    const int code =
        LftctlMain({"pull", "j", "--store", absl::StrCat("127.0.0.1:", port),
                    "--out", out},
                   o, e, false);
    if (declared == kShaAbc) {
      EXPECT_EQ(code, kExitOk) << e.str();
      EXPECT_EQ(ReadFile(out), "abc");
    } else {
      EXPECT_EQ(code, kExitDataLoss);
      EXPECT_THAT(e.str(), HasSubstr("lftctl: data loss: checkpoint 'step-1' "
                                     "of job 'j' arrived as 3 bytes with "
                                     "sha256 ba7816bf"));
      EXPECT_THAT(e.str(), HasSubstr("but the store recorded 3 bytes with "
                                     "sha256 0000"));
      EXPECT_EQ(ReadFile(out), "old");  // not replaced
      EXPECT_THAT(o.str(), Not(HasSubstr("bytes  sha256")));
    }
    EXPECT_TRUE(NoPartialFiles(out));
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(1));
  }
}

}  // namespace
}  // namespace lft
