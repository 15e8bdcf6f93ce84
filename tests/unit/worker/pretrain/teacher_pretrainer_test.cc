#include "worker/pretrain/teacher_pretrainer.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/text/bpe_tokenizer.h"
#include "common/text/bpe_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/model/gpt_neox.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;

// Highly regular text: a model that uses context beats unigram statistics.
std::string Text(int n, int salt) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    const int a = (i * 7 + salt) % 10, b = (i * 3 + salt) % 10;
    s += "add " + std::to_string(a) + " and " + std::to_string(b) + " gives " +
         std::to_string(a + b) + ". ";
  }
  return s;
}

struct Fixture {
  std::string tokenizer_json;
  std::unique_ptr<BpeTokenizer> tokenizer;
  std::vector<int32_t> train, heldout;
};

Fixture MakeFixture() {
  Fixture f;
  BpeTrainer trainer({300, 2});
  trainer.AddText(Text(400, 0));
  f.tokenizer_json = *trainer.TrainToJson();
  f.tokenizer = *BpeTokenizer::FromJson(f.tokenizer_json);
  f.train = f.tokenizer->Encode(Text(3000, 1));
  f.heldout = f.tokenizer->Encode(Text(300, 5));
  return f;
}

PretrainOptions TinyOptions(int64_t vocab) {
  PretrainOptions o;
  o.config.vocab_size = vocab;
  o.config.hidden_size = 32;
  o.config.num_hidden_layers = 2;
  o.config.num_attention_heads = 2;
  o.config.intermediate_size = 64;
  o.config.rotary_pct = 0.25;
  o.config.max_position_embeddings = 64;
  o.sequence_length = 32;
  o.batch_sequences = 8;
  o.max_steps = 120;
  o.learning_rate = 3e-3;
  o.warmup_steps = 10;
  o.heldout_sequences = 16;
  o.num_threads = 1;
  return o;
}

TEST(TeacherPretrainerTest, LearnsBeyondUnigramsAndWritesALoadableHfDirectory) {
  Fixture f = MakeFixture();
  const std::string out =
      ::testing::TempDir() + "/pretrain-" + std::to_string(getpid());
  PretrainOptions options = TinyOptions(f.tokenizer->vocab_size());
  int progress_calls = 0;
  auto report =
      PretrainTeacher(f.train, f.heldout, options, f.tokenizer_json, out,
                      [&](const PretrainProgress&) { ++progress_calls; });
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->steps, 120);
  EXPECT_EQ(report->tokens_trained, 120 * 8 * 32);
  EXPECT_EQ(progress_calls, 12);
  // Untrained, the loss is about ln(vocab) = 5.7; the unigram model is far
  // better, and a trained model with context is better still.
  EXPECT_LT(report->unigram_entropy, std::log(300.0));
  EXPECT_LT(report->heldout_loss, report->unigram_entropy - 0.5)
      << "held-out " << report->heldout_loss << " unigram "
      << report->unigram_entropy;
  EXPECT_NEAR(report->heldout_perplexity, std::exp(report->heldout_loss), 1e-6);

  // The directory loads through the real loading path and scores the same.
  auto model = GptNeoX::Load(out);
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ((*model)->config().num_hidden_layers, 2);
  EXPECT_EQ((*model)->config().vocab_size, f.tokenizer->vocab_size());
  auto ids = torch::tensor(std::vector<int64_t>(f.heldout.begin(),
                                                f.heldout.begin() + 33))
                 .unsqueeze(0);
  auto fwd = (*model)->Forward(ids.slice(1, 0, 32));
  ASSERT_THAT(fwd, IsOk());
  const double nll =
      torch::nn::functional::cross_entropy(fwd->logits[0], ids[0].slice(0, 1))
          .item<double>();
  EXPECT_LT(nll, report->unigram_entropy);
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.json"));
  auto reloaded = BpeTokenizer::FromFile(out + "/tokenizer.json");
  ASSERT_THAT(reloaded, IsOk());
  EXPECT_EQ((*reloaded)->Encode("add 3 and 4 gives 7."),
            f.tokenizer->Encode("add 3 and 4 gives 7."));
  std::filesystem::remove_all(out);
}

TEST(TeacherPretrainerTest, RejectsBadInputWithoutWritingAnything) {
  Fixture f = MakeFixture();
  const std::string out =
      ::testing::TempDir() + "/pretrain-bad-" + std::to_string(getpid());
  PretrainOptions options = TinyOptions(f.tokenizer->vocab_size());
  EXPECT_THAT(
      PretrainTeacher({1, 2, 3}, f.heldout, options, f.tokenizer_json, out),
      StatusIs(absl::StatusCode::kInvalidArgument, "corpus too small"));
  options.sequence_length = 1000;
  EXPECT_THAT(
      PretrainTeacher(f.train, f.heldout, options, f.tokenizer_json, out),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "max_position_embeddings = 64"));
  options = TinyOptions(10);  // ids beyond a 10-token vocabulary
  EXPECT_THAT(
      PretrainTeacher(f.train, f.heldout, options, f.tokenizer_json, out),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "outside the vocabulary of 10"));
  options = TinyOptions(f.tokenizer->vocab_size());
  options.device = "tpu:7";
  EXPECT_THAT(
      PretrainTeacher(f.train, f.heldout, options, f.tokenizer_json, out),
      StatusIs(absl::StatusCode::kInternal, "PretrainTeacher"));
  EXPECT_FALSE(std::filesystem::exists(out));
}

}  // namespace
}  // namespace lft
