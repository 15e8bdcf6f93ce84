#include "common/text/bpe_trainer.h"

#include <string>

#include "common/text/bpe_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;

std::string Corpus() {
  std::string text;
  for (int i = 0; i < 200; ++i) {
    text += "the quick brown fox jumps over the lazy dog. ";
    text += "What is " + std::to_string(i) + " plus " + std::to_string(i * 7) +
            "? ";
    text += "def f(x):\n    return x + " + std::to_string(i % 10) + "\n";
  }
  return text;
}

TEST(BpeTrainerTest, TrainedTokenizerLoadsAndRoundTrips) {
  BpeTrainer trainer({/*vocab_size=*/400, /*min_frequency=*/2});
  trainer.AddText(Corpus());
  auto json = trainer.TrainToJson();
  ASSERT_THAT(json, IsOk());
  auto tok = BpeTokenizer::FromJson(*json);
  ASSERT_THAT(tok, IsOk());
  EXPECT_EQ((*tok)->vocab_size(), 400);
  EXPECT_EQ((*tok)->TokenToId("<|endoftext|>"), 0);
  EXPECT_EQ((*tok)->TokenToId("<|padding|>"), 1);

  for (const std::string& s :
       {std::string("the quick brown fox"),
        std::string("unseen wörds ünïcode 🙂 and\ttabs"),
        Corpus().substr(0, 500)}) {
    auto ids = (*tok)->Encode(s);
    EXPECT_EQ((*tok)->Decode(ids), s);
  }
  // Frequent words became single tokens ("Ġ" is the byte-level space).
  EXPECT_TRUE((*tok)->TokenToId("Ġquick").has_value());
  EXPECT_EQ((*tok)->Encode(" quick").size(), 1u);
  // The trained merges compress: far fewer tokens than bytes.
  const std::string sample = Corpus().substr(0, 2000);
  EXPECT_LT((*tok)->Encode(sample).size() * 3, sample.size());
}

TEST(BpeTrainerTest, SameInputGivesTheSameFile) {
  BpeTrainer a({300, 2}), b({300, 2});
  a.AddText(Corpus());
  b.AddText(Corpus());
  EXPECT_EQ(*a.TrainToJson(), *b.TrainToJson());
}

TEST(BpeTrainerTest, StopsWhenNoPairIsFrequentEnough) {
  BpeTrainer trainer({100000, /*min_frequency=*/1000000});
  trainer.AddText("hello hello hello");
  auto json = trainer.TrainToJson();
  ASSERT_THAT(json, IsOk());
  auto tok = BpeTokenizer::FromJson(*json);
  ASSERT_THAT(tok, IsOk());
  EXPECT_EQ((*tok)->vocab_size(), 258);  // specials + bytes, no merges
}

TEST(BpeTrainerTest, VocabTooSmallForTheAlphabetIsRejected) {
  BpeTrainer trainer({100, 2});
  EXPECT_THAT(trainer.TrainToJson(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "cannot hold 2 special tokens"));
}

}  // namespace
}  // namespace lft
