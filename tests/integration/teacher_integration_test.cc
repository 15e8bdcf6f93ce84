// lft-store + lft-coordinator + two `lft-worker --role teacher` processes
// extract a small corpus with a tiny random teacher for a compress job whose
// training and evaluation phases run on lft-fake-worker; the store's pairs
// must equal (keys, token ids, payload bytes) an in-process extraction of the
// same shards. The second test SIGKILLs a teacher mid-shard. Every wait is
// bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/corpus/jsonl_zst.h"
#include "common/corpus/synthetic_corpus.h"
#include "common/text/bpe_trainer.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "latent-store/remote_pair_store.h"
#include "latent-store/sharded_pair_store.h"
#include "tests/integration/local_cluster.h"
#include "tests/integration/store_process.h"
#include "tests/testing/child_process.h"
#include "tests/testing/promtool.h"
#include "tests/unit/latent-store/test_util.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/teacher/teacher_extraction_runner.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using testing_util::StoreProcess;
using testing_util::TempDir;

constexpr int kDocsPerShard = 8;
constexpr int kSeqLen = 32;

using Process = ::lft::testing::ChildProcess;
using ::lft::testing::ReadFile;

std::string HttpGet(int port, const std::string& path) {
  return ::lft::testing::LoopbackHttpBody(port, path);
}

std::string PairKey(const LatentPairRecord& p) {
  return absl::StrCat(p.shard, "/", p.sequence, "/", p.chunk);
}

class TeacherIntegrationTest : public testing_util::LocalClusterTest {
 protected:
  void SetUp() override {
    LocalClusterTest::SetUp();
    spec_ = Path("spec.json");
    std::ofstream(spec_) << absl::StrCat(
        R"({"name": "teacher-it", "teacher": {"path": ")", teacher_,
        R"("}, "corpus": {"jsonlZstPaths": [")", corpus_,
        R"("], "documentsPerShard": )", kDocsPerShard,
        R"(}, "block": {"firstLayer": 1, "endLayer": 3}, "sequenceLength": )",
        kSeqLen, R"(, "storageDtype": "STORAGE_DTYPE_BF16",)",
        R"( "training": {"maxSteps": 10, "checkpointEverySteps": 5},)",
        R"( "evaluation": {"maxSequences": 4, "heldoutPaths": [")", corpus_,
        R"("]}})");
  }

  std::vector<LatentPairRecord> ReadAll(PairStore* store,
                                        const std::string& job) {
    return testing_util::ScanAll(store, job);
  }

  // The same shards extracted by one in-process runner (threads 1, batch 4,
  // like the workers) into an embedded store.
  std::vector<LatentPairRecord> Reference(const std::string& job) {
    const std::string db = Path("ref-store");
    {
      TeacherRunnerOptions o;
      o.store_db = db;
      o.batch_sequences = 4;
      TeacherExtractionRunner runner(o);
      for (int s = 0; s * kDocsPerShard < kDocs; ++s) {
        lft::v1::Task t;
        t.set_task_id(absl::StrCat("ref", s));
        t.set_job_id(job);
        auto* spec = t.mutable_spec();
        spec->mutable_teacher()->set_path(teacher_);
        spec->mutable_block()->set_first_layer(1);
        spec->mutable_block()->set_end_layer(3);
        spec->set_sequence_length(kSeqLen);
        spec->set_storage_dtype(lft::v1::STORAGE_DTYPE_BF16);
        auto* ex = t.mutable_extraction();
        ex->set_corpus_path(corpus_);
        ex->set_first_document(s * kDocsPerShard);
        ex->set_end_document(std::min(kDocs, (s + 1) * kDocsPerShard));
        ex->set_shard_index(s);
        testing_util::RecordingTaskContext ctx;
        auto r = runner.Run(t, &ctx);
        EXPECT_TRUE(r.ok()) << r.status();
      }
    }
    auto store = LatentStore::Open(db, {});
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return {};
    return ReadAll(store->get(), job);
  }

  // Waits (at most 20 s) until the store holds pairs of `job`; how many
  // (0 if none came).
  uint64_t WaitForFirstPairs(const std::string& job) {
    auto client = Client();
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      auto s = client->Stats(job);
      if (s.ok() && s->pairs > 0) return s->pairs;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return 0;
  }

  void ExpectSameAsReference(const std::string& job) {
    auto client = Client();
    const auto got = ReadAll(client.get(), job);
    const auto want = Reference(job);
    ASSERT_FALSE(want.empty());
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(PairKey(got[i]), PairKey(want[i])) << i;
      EXPECT_EQ(got[i].token_ids, want[i].token_ids) << PairKey(got[i]);
      EXPECT_EQ(got[i].codec, want[i].codec);
      EXPECT_TRUE(got[i].x0 == want[i].x0) << PairKey(got[i]);
      EXPECT_TRUE(got[i].x1 == want[i].x1) << PairKey(got[i]);
    }
    auto stats = client->Stats(job);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->pairs, want.size());
  }

  std::string spec_;
};

TEST_F(TeacherIntegrationTest, TwoTeachersExtractJobSucceedsPairsMatch) {
  StartServices();
  auto t1 = StartTeacher("t1", {"--metrics-port", "0"});
  auto t2 = StartTeacher("t2", {"--metrics-port", "0"});
  auto tr = StartFake("trainer", "tr");
  auto ev = StartFake("evaluator", "ev");
  auto submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.first, 0) << submit.second;
  const std::string job(absl::StripAsciiWhitespace(submit.second));
  auto watch = Ctl({"watch", job}, absl::Seconds(60));
  ASSERT_EQ(watch.first, 0) << watch.second << t1->err() << t2->err();
  EXPECT_NE(watch.second.find("SUCCEEDED"), std::string::npos);
  EXPECT_NE((t1->err() + t2->err()).find("shard extracted"), std::string::npos);
  // The teachers' /metrics (ports from their log lines) together count
  // every pair once.
  double pairs_metric = 0;
  std::vector<std::pair<int, std::string>> expositions;  // pid, body
  for (Process* t : {t1.get(), t2.get()}) {
    const std::string metrics = ScrapeWorkerMetrics(t);
    ASSERT_FALSE(metrics.empty()) << t->err();
    const std::string series = absl::StrCat(
        "lft_teacher_pairs_written_total{job=\"", job, "\",role=\"teacher\"} ");
    const size_t p = metrics.find(series);
    if (p == std::string::npos) continue;  // this teacher got no task
    double v = 0;
    ASSERT_TRUE(absl::SimpleAtod(
        metrics.substr(p + series.size(),
                       metrics.find('\n', p) - p - series.size()),
        &v))
        << metrics;
    pairs_metric += v;
    EXPECT_NE(metrics.find("lft_teacher_tokens_total{"), std::string::npos);
    EXPECT_NE(metrics.find("lft_teacher_tokens_per_second{"),
              std::string::npos);
    expositions.push_back({t->pid(), metrics});
  }
  auto client = Client();
  auto stats = client->Stats(job);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(pairs_metric, static_cast<double>(stats->pairs));
  ExpectSameAsReference(job);

  // Every populated /metrics passes promtool: the teachers' and the store's
  // (after the pairs went in and were scanned out).
  ASSERT_FALSE(expositions.empty());
  const std::string store_metrics = HttpGet(store_->metrics_port(), "/metrics");
  EXPECT_NE(store_metrics.find("lft_store_pairs_written_total"),
            std::string::npos)
      << store_metrics;

  // The coordinator registered the job with the store before the teachers
  // ran (they found it there); lftctl delete removes its data through the
  // coordinator and the job stays listed.
  auto del = Ctl({"delete", job});
  ASSERT_EQ(del.first, 0) << del.second;
  EXPECT_NE(del.second.find("data deleted"), std::string::npos) << del.second;
  EXPECT_TRUE(absl::IsNotFound(client->Stats(job).status()))
      << client->Stats(job).status();
  auto get = Ctl({"get", job});
  EXPECT_NE(get.second.find("pairs, checkpoints and reports deleted"),
            std::string::npos)
      << get.second;
  if (!::lft::testing::HavePromtool()) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  for (const auto& [pid, body] : expositions) {
    EXPECT_TRUE(::lft::testing::PromtoolCheckMetrics(body).ok())
        << "teacher pid " << pid << ": "
        << ::lft::testing::PromtoolCheckMetrics(body);
  }
  absl::Status store_check =
      ::lft::testing::PromtoolCheckMetrics(store_metrics);
  EXPECT_TRUE(store_check.ok()) << "lft-store: " << store_check;
}

// --store-address "a,b": the coordinator registers the job in both stores
// and the teachers' pairs are split between them (by shard and sequence),
// together exactly the single-store extraction; delete reaches both.
TEST_F(TeacherIntegrationTest, JobOverTwoStoresSplitsItsPairs) {
  StartServices(/*second_store=*/true);
  auto t1 = StartTeacher("t1");
  auto tr = StartFake("trainer", "tr");
  auto ev = StartFake("evaluator", "ev");
  auto submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.first, 0) << submit.second;
  const std::string job(absl::StripAsciiWhitespace(submit.second));
  auto watch = Ctl({"watch", job}, absl::Seconds(60));
  ASSERT_EQ(watch.first, 0) << watch.second << t1->err() << coord_->err();
  EXPECT_NE(watch.second.find("SUCCEEDED"), std::string::npos);
  auto a = Client(), b = Client(/*second=*/true);
  auto sa = a->Stats(job), sb = b->Stats(job);
  ASSERT_TRUE(sa.ok() && sb.ok()) << sa.status() << sb.status();
  EXPECT_GT(sa->pairs, 0u);
  EXPECT_GT(sb->pairs, 0u);
  std::vector<std::unique_ptr<PairStore>> parts;
  parts.push_back(std::move(a));
  parts.push_back(std::move(b));
  ShardedPairStore both(std::move(parts));
  auto got = ReadAll(&both, job);
  const auto want = Reference(job);
  ASSERT_FALSE(want.empty());
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(sa->pairs + sb->pairs, want.size());
  std::map<std::string, const LatentPairRecord*> by_key;
  for (const auto& p : got) by_key[PairKey(p)] = &p;
  for (const auto& w : want) {
    auto it = by_key.find(PairKey(w));
    ASSERT_NE(it, by_key.end()) << PairKey(w);
    EXPECT_TRUE(it->second->x0 == w.x0 && it->second->x1 == w.x1) << PairKey(w);
  }
  auto del = Ctl({"delete", job});
  ASSERT_EQ(del.first, 0) << del.second;
  EXPECT_TRUE(absl::IsNotFound(Client()->Stats(job).status()));
  EXPECT_TRUE(absl::IsNotFound(Client(true)->Stats(job).status()));
}

TEST_F(TeacherIntegrationTest, TeacherKilledMidShardJobCompletesSamePairs) {
  StartServices();
  // Slow teacher: 300 ms after every batch of 4 sequences.
  auto t1 = StartTeacher("t1", {"--test-pause-ms-per-batch", "300"});
  auto tr = StartFake("trainer", "tr");
  auto ev = StartFake("evaluator", "ev");
  auto submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.first, 0) << submit.second;
  const std::string job(absl::StripAsciiWhitespace(submit.second));
  // Wait (bounded) until t1 has written some pairs, then kill it mid-shard.
  const uint64_t pairs_before_kill = WaitForFirstPairs(job);
  t1->Kill(SIGKILL);
  ASSERT_EQ(t1->Wait(absl::Seconds(5)), 128 + SIGKILL);
  // Killed inside its first shard (about 13 batches of 300 ms).
  EXPECT_GT(pairs_before_kill, 0u);
  auto after_kill = Client()->Stats(job);
  ASSERT_TRUE(after_kill.ok()) << after_kill.status();
  EXPECT_LT(after_kill->pairs, 40u) << "not mid-shard";
  EXPECT_EQ(t1->err().find("shard extracted"), std::string::npos);
  auto t2 = StartTeacher("t2");
  auto watch = Ctl({"watch", job}, absl::Seconds(60));
  ASSERT_EQ(watch.first, 0) << watch.second << t2->err();
  EXPECT_NE(watch.second.find("SUCCEEDED"), std::string::npos);
  ExpectSameAsReference(job);
}

// The store is killed (-9) in the middle of extraction and restarted on
// the same address and directory a second later. Pairs the teacher had
// written but not synced may be gone; the teacher sees the store go away
// (or SyncPairs sees the new write session), waits, redoes its shard, and
// the job ends with exactly the pairs of an uninterrupted extraction.
TEST_F(TeacherIntegrationTest, StoreKilledMidExtractionJobCompletesSamePairs) {
  StartServices();
  auto t1 = StartTeacher("t1", {"--test-pause-ms-per-batch", "300"});
  auto tr = StartFake("trainer", "tr");
  auto ev = StartFake("evaluator", "ev");
  auto submit = Ctl({"submit", spec_});
  ASSERT_EQ(submit.first, 0) << submit.second;
  const std::string job(absl::StripAsciiWhitespace(submit.second));
  WaitForFirstPairs(job);
  const std::string address = store_->address();
  store_->Kill(SIGKILL);
  absl::SleepFor(absl::Seconds(1));
  auto restarted = StoreProcess::Start(
      LFT_STORE_BIN,
      {"--listen", address, "--insecure-loopback", "--token", kToken, "--db",
       Path("store"), "--metrics-port", "0"},
      absl::Seconds(20));
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  store_ = std::make_unique<StoreProcess>(std::move(*restarted));
  auto watch = Ctl({"watch", job}, absl::Seconds(90));
  ASSERT_EQ(watch.first, 0) << watch.second << t1->err();
  EXPECT_NE(watch.second.find("SUCCEEDED"), std::string::npos);
  EXPECT_NE(t1->err().find("redoing the shard"), std::string::npos)
      << "the teacher never noticed the restart: " << t1->err();
  ExpectSameAsReference(job);
}

}  // namespace
}  // namespace lft
