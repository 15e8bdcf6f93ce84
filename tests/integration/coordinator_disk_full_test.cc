// A full disk under a real lft-coordinator (its --db on a small tmpfs):
// Submit gets RESOURCE_EXHAUSTED naming the directory and changes nothing,
// the process stays up and serves Get and List, the next Submit after space
// returns succeeds without a restart (RocksDB's DB::Resume()), and a
// restart on the same --db finds every accepted job. Needs mount(2) (root);
// skipped with the reason otherwise.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/mount.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lft/v1/job.grpc.pb.h"
#include "tests/testing/child_process.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using Process = ::lft::testing::ChildProcess;
using testing_util::TempDir;

class CoordinatorDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("LFT_AUTH_TOKEN");
    mount_ = dir_.Sub("tmpfs");
    std::filesystem::create_directories(mount_);
    if (mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=8m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno)
                   << "); the disk-full test needs root";
    }
    mounted_ = true;
    // The corpus and teacher live outside the tmpfs: planning reads them.
    std::string text;
    for (int i = 0; i < 20; ++i)
      text += absl::StrCat("{\"text\": \"doc ", i, "\"}\n");
    std::string z(ZSTD_compressBound(text.size()), '\0');
    z.resize(ZSTD_compress(z.data(), z.size(), text.data(), text.size(), 1));
    corpus_ = dir_.Sub("pile.jsonl.zst");
    std::ofstream(corpus_, std::ios::binary) << z;
    teacher_ = dir_.Sub("teacher");
    std::filesystem::create_directories(teacher_);
    std::ofstream(teacher_ + "/config.json")
        << R"({"num_hidden_layers": 24, "max_position_embeddings": 2048})";
  }
  void TearDown() override {
    coordinator_.reset();
    if (mounted_) umount2(mount_.c_str(), MNT_DETACH);
  }

  // Starts lft-coordinator on --db `db` and connects (bounded wait).
  void Start(const std::string& db) {
    std::filesystem::remove(dir_.Sub("port"));
    coordinator_ = std::make_unique<Process>(
        std::vector<std::string>{
            LFT_COORDINATOR_BIN, "--db", db, "--listen", "127.0.0.1:0",
            "--port-file", dir_.Sub("port"), "--insecure-loopback", "--tick-ms",
            "50", "--skip-input-checks", "--min-free-disk-mib", "1"},
        dir_.Sub("coordinator.out"), dir_.Sub("coordinator.log"));
    int port = 0;
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (absl::Now() < deadline && coordinator_->running()) {
      std::vector<std::string> ports =
          absl::StrSplit(::lft::testing::ReadFile(dir_.Sub("port")), ' ');
      if (ports.size() == 2 && absl::SimpleAtoi(ports[0], &port)) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_GT(port, 0) << "coordinator did not start: " << coordinator_->err();
    stub_ = lft::v1::JobService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Submit(int n, std::string* id) {
    lft::v1::SubmitJobRequest req;
    auto* spec = req.mutable_spec();
    spec->set_name(absl::StrCat("job-", n));
    spec->mutable_teacher()->set_path(teacher_);
    spec->mutable_corpus()->add_jsonl_zst_paths(corpus_);
    spec->mutable_corpus()->set_documents_per_shard(10);
    spec->mutable_block()->set_first_layer(6);
    spec->mutable_block()->set_end_layer(12);
    spec->mutable_evaluation()->add_heldout_paths(corpus_);
    lft::v1::SubmitJobResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::Status s = stub_->Submit(&ctx, req, &resp);
    if (s.ok()) *id = resp.job().id();
    return s;
  }

  // Ids of List (one page is enough here).
  std::set<std::string> ListedIds() {
    lft::v1::ListJobsRequest req;
    req.set_page_size(1000);
    lft::v1::ListJobsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::Status s = stub_->List(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::set<std::string> ids;
    for (const auto& j : resp.jobs()) ids.insert(j.id());
    return ids;
  }

  TempDir dir_;
  std::string mount_, corpus_, teacher_;
  bool mounted_ = false;
  std::unique_ptr<Process> coordinator_;
  std::unique_ptr<lft::v1::JobService::Stub> stub_;
};

TEST_F(CoordinatorDiskFullTest,
       FullDiskIsResourceExhaustedReadsGoOnSubmitsResume) {
  const std::string db = mount_ + "/db";
  ASSERT_NO_FATAL_FAILURE(Start(db));
  std::set<std::string> accepted;
  int n = 0;
  std::string id;
  ASSERT_TRUE(Submit(n++, &id).ok());
  accepted.insert(id);

  // Ballast fills the rest of the tmpfs; deleted later to give it back.
  const std::string ballast = mount_ + "/ballast";
  {
    std::ofstream f(ballast, std::ios::binary);
    const std::string kb(4096, 'x');
    while (f.write(kb.data(), kb.size())) {
    }
  }
  // A job record is small: the WAL's last page may take a few more before
  // a write needs a page the disk no longer has.
  grpc::Status full;
  for (int i = 0; i < 200 && full.ok(); ++i) {
    full = Submit(n++, &id);
    if (full.ok()) accepted.insert(id);
  }
  ASSERT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << full.error_message() << "\n"
      << coordinator_->err();
  EXPECT_NE(full.error_message().find(db), std::string::npos)
      << full.error_message();
  EXPECT_NE(full.error_message().find("is full"), std::string::npos)
      << full.error_message();
  // Still full: the same clear error, and nothing is accepted meanwhile.
  grpc::Status again = Submit(n++, &id);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << again.error_message();

  // Up, and reads are served: exactly the accepted jobs.
  ASSERT_TRUE(coordinator_->running()) << coordinator_->err();
  EXPECT_EQ(ListedIds(), accepted);
  {
    lft::v1::GetJobRequest req;
    req.set_job_id(*accepted.begin());
    lft::v1::GetJobResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::Status s = stub_->Get(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(resp.job().id(), *accepted.begin());
  }

  // Space returns: the next Submit succeeds without a restart (bounded
  // retries: RocksDB resumes at the next write).
  ASSERT_TRUE(std::filesystem::remove(ballast));
  grpc::Status resumed;
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  do {
    resumed = Submit(n++, &id);
    if (!resumed.ok()) absl::SleepFor(absl::Milliseconds(100));
  } while (!resumed.ok() && absl::Now() < deadline);
  ASSERT_TRUE(resumed.ok()) << resumed.error_message();
  accepted.insert(id);
  EXPECT_EQ(ListedIds(), accepted);

  // No state lost: a restart on the same --db lists every accepted job.
  coordinator_->Kill(SIGTERM);
  ASSERT_EQ(coordinator_->Wait(absl::Seconds(15)), 0) << coordinator_->err();
  ASSERT_NO_FATAL_FAILURE(Start(db));
  EXPECT_EQ(ListedIds(), accepted);
}

}  // namespace
}  // namespace lft
