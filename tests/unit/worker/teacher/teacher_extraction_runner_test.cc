// TeacherExtractionRunner on a tiny random teacher (vocab 300, 3 layers)
// with a BpeTrainer tokenizer, a small jsonl.zst corpus and an embedded
// LatentStore: pair count, content against GptNeoX::Extract, overwrite on
// re-run, cancellation, and error messages.
#include "worker/teacher/teacher_extraction_runner.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/corpus/jsonl_zst.h"
#include "common/corpus/synthetic_corpus.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/bpe_trainer.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "tests/unit/latent-store/test_util.h"
#include "tests/unit/worker/runner_test_util.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"

namespace lft {
namespace {

namespace fs = std::filesystem;

using FakeContext = testing_util::RecordingTaskContext;

std::string DocText(int64_t i) {
  return MakeSyntheticDocument(7, i).text.substr(0, 300);
}

class TeacherRunnerTest : public ::testing::Test {
 protected:
  static constexpr int kDocs = 12;
  static constexpr int kSeqLen = 32;

  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("teacher_runner_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "teacher");
    NeoXConfig c;
    c.vocab_size = 300;
    c.hidden_size = 32;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 4;
    c.intermediate_size = 64;
    c.max_position_embeddings = 128;
    c.rotary_pct = 0.5;
    const std::string dir = (root_ / "teacher").string();
    ASSERT_TRUE(testing_util::WriteRandomTeacher(dir, c, 3).ok());
    std::vector<std::string> texts;
    for (int i = 0; i < 40; ++i) texts.push_back(DocText(i));
    auto json = testing_util::WriteTrainedTokenizer(dir, 300, texts);
    ASSERT_TRUE(json.ok()) << json.status();
    corpus_ = (root_ / "corpus.jsonl.zst").string();
    texts.resize(kDocs);
    ASSERT_TRUE(testing_util::WritePileFile(corpus_, texts).ok());

    // The expected token stream of documents [2, 10): ids then EOS each.
    auto tok = BpeTokenizer::FromJson(*json);
    ASSERT_TRUE(tok.ok()) << tok.status();
    const int32_t eos = *(*tok)->TokenToId("<|endoftext|>");
    for (int i = 2; i < 10; ++i) {
      for (int32_t id : (*tok)->Encode(DocText(i))) stream_.push_back(id);
      stream_.push_back(eos);
    }
    auto model = GptNeoX::Load((root_ / "teacher").string());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  void TearDown() override { fs::remove_all(root_); }

  lft::v1::Task MakeTask(lft::v1::StorageDtype dtype) const {
    lft::v1::Task t;
    t.set_task_id("t1");
    t.set_job_id("job1");
    auto* spec = t.mutable_spec();
    spec->set_kind(lft::v1::JOB_KIND_COMPRESS);
    spec->mutable_teacher()->set_path((root_ / "teacher").string());
    spec->mutable_block()->set_first_layer(1);
    spec->mutable_block()->set_end_layer(3);
    spec->set_sequence_length(kSeqLen);
    spec->set_storage_dtype(dtype);
    auto* ex = t.mutable_extraction();
    ex->set_corpus_path(corpus_);
    ex->set_first_document(2);
    ex->set_end_document(10);
    ex->set_shard_index(5);
    return t;
  }

  TeacherRunnerOptions Options() const {
    TeacherRunnerOptions o;
    o.store_db = (root_ / "store").string();
    o.batch_sequences = 3;
    return o;
  }

  std::vector<LatentPairRecord> ReadAll(PairStore* store) {
    return testing_util::ScanAll(store, "job1");
  }

  fs::path root_;
  std::string corpus_;
  std::vector<int32_t> stream_;
  std::unique_ptr<GptNeoX> model_;
};

TEST_F(TeacherRunnerTest, WritesOnePairPerFullSequenceMatchingExtract) {
  const uint64_t expected = stream_.size() / kSeqLen;
  ASSERT_GE(expected, 4u) << "fixture too small";
  {
    TeacherExtractionRunner runner(Options());
    FakeContext ctx;
    auto r = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->pairs_written, expected);
    EXPECT_EQ(ctx.last.sequences_done, expected);
    EXPECT_EQ(ctx.last.tokens_done, expected * kSeqLen);
    EXPECT_EQ(ctx.last.documents_done, 8u);
    EXPECT_GT(ctx.last.tokens_per_second, 0);
    // Same task again: same keys, overwritten; the teacher is cached.
    auto again = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->pairs_written, expected);
    EXPECT_EQ(runner.cached_teachers(), 1u);
  }
  auto store = LatentStore::Open((root_ / "store").string(), {});
  ASSERT_TRUE(store.ok()) << store.status();
  auto stats = (*store)->Stats("job1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, expected);
  const auto pairs = ReadAll(store->get());
  ASSERT_EQ(pairs.size(), expected);
  for (size_t s = 0; s < pairs.size(); ++s) {
    const LatentPairRecord& p = pairs[s];
    EXPECT_EQ(p.shard, 5u);
    EXPECT_EQ(p.sequence, s);
    EXPECT_EQ(p.chunk, 0u);
    ASSERT_EQ(p.tokens, static_cast<uint32_t>(kSeqLen));
    EXPECT_EQ(p.hidden, 32u);
    const std::vector<int32_t> want(stream_.begin() + s * kSeqLen,
                                    stream_.begin() + (s + 1) * kSeqLen);
    ASSERT_EQ(p.token_ids, want) << "sequence " << s;
    auto ids = torch::tensor(std::vector<int64_t>(want.begin(), want.end()))
                   .view({1, kSeqLen});
    auto ref = model_->Extract(ids, 1, 3);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto x0 = DecodeRowsToVector(p.codec, p.x0, p.tokens, p.hidden);
    auto x1 = DecodeRowsToVector(p.codec, p.x1, p.tokens, p.hidden);
    ASSERT_TRUE(x0.ok() && x1.ok());
    auto got0 = torch::tensor(*x0).view({1, kSeqLen, 32});
    auto got1 = torch::tensor(*x1).view({1, kSeqLen, 32});
    EXPECT_TRUE(torch::allclose(got0, ref->first, 1e-5, 1e-5)) << s;
    EXPECT_TRUE(torch::allclose(got1, ref->second, 1e-5, 1e-5)) << s;
  }
}

TEST_F(TeacherRunnerTest, Bf16StorageWithinCodecTolerance) {
  {
    TeacherExtractionRunner runner(Options());
    FakeContext ctx;
    auto r = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_BF16), &ctx);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->pairs_written, stream_.size() / kSeqLen);
  }
  auto store = LatentStore::Open((root_ / "store").string(), {});
  ASSERT_TRUE(store.ok()) << store.status();
  const auto pairs = ReadAll(store->get());
  ASSERT_EQ(pairs.size(), stream_.size() / kSeqLen);
  const LatentPairRecord& p = pairs.back();
  EXPECT_EQ(p.codec, TensorCodec::kBF16);
  auto ids = torch::tensor(
                 std::vector<int64_t>(p.token_ids.begin(), p.token_ids.end()))
                 .view({1, kSeqLen});
  auto ref = model_->Extract(ids, 1, 3);
  ASSERT_TRUE(ref.ok()) << ref.status();
  auto x1 = DecodeRowsToVector(p.codec, p.x1, p.tokens, p.hidden);
  ASSERT_TRUE(x1.ok());
  auto got1 = torch::tensor(*x1).view({1, kSeqLen, 32});
  // bf16 keeps 8 significant bits: relative error <= 2^-8.
  EXPECT_TRUE(torch::allclose(got1, ref->second, 1.0 / 128, 1e-3));
  EXPECT_FALSE(torch::equal(got1, ref->second));
}

TEST_F(TeacherRunnerTest, CancellationStopsBetweenBatches) {
  TeacherExtractionRunner runner(Options());
  FakeContext whole;
  auto all = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &whole);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_GT(all->pairs_written, 6u);
  // Cancelled at the first progress report, which comes before the first
  // batch reaches the GPU: the task stops with most of the shard undone
  // (batches already handed to the store writers still land).
  FakeContext ctx;
  ctx.cancel_after_reports = 1;
  auto r = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled) << r.status();
  EXPECT_NE(r.status().message().find("test cancel"), std::string::npos);
  EXPECT_LT(ctx.last.sequences_done, all->pairs_written);
}

TEST_F(TeacherRunnerTest, ErrorsNameTheFile) {
  TeacherExtractionRunner runner(Options());
  FakeContext ctx;
  auto task = MakeTask(lft::v1::STORAGE_DTYPE_F32);
  task.mutable_extraction()->set_corpus_path(
      (root_ / "missing.jsonl.zst").string());
  auto r = runner.Run(task, &ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("missing.jsonl.zst"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("shard 5"), std::string::npos);

  auto bad_teacher = MakeTask(lft::v1::STORAGE_DTYPE_F32);
  bad_teacher.mutable_spec()->mutable_teacher()->set_path(
      (root_ / "nope").string());
  r = runner.Run(bad_teacher, &ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("nope"), std::string::npos) << r.status();

  TeacherRunnerOptions no_store = Options();
  no_store.store_db.clear();
  TeacherExtractionRunner runner2(no_store);
  r = runner2.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
      << r.status();
}

}  // namespace
}  // namespace lft

namespace lft {
namespace {

// Regression: truncating model.safetensors under a running worker killed it
// with SIGBUS (the cached teacher's weights were views into an mmap). Now
// the file is read, and the next task reloads it and fails naming it.
TEST_F(TeacherRunnerTest, TeacherTruncatedUnderRunningWorkerFailsNextTask) {
  TeacherExtractionRunner runner(Options());
  FakeContext ctx;
  auto first = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
  ASSERT_TRUE(first.ok()) << first.status();
  const fs::path weights = root_ / "teacher" / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  auto second = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
  EXPECT_THAT(second, testing_util::StatusIs(absl::StatusCode::kDataLoss,
                                             "model.safetensors"));
  // The runner (and its process) live on: a repaired teacher works again.
  ASSERT_TRUE(testing_util::WriteRandomTeacher((root_ / "teacher").string(),
                                               model_->config(), 3)
                  .ok());
  auto third = runner.Run(MakeTask(lft::v1::STORAGE_DTYPE_F32), &ctx);
  EXPECT_TRUE(third.ok()) << third.status();
}

}  // namespace
}  // namespace lft
