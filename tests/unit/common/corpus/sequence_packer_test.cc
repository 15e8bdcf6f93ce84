#include "common/corpus/sequence_packer.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lft {
namespace {

using ::testing::ElementsAre;

constexpr int32_t kEos = 0;
constexpr int32_t kPad = 99;

SequencePacker MakePacker(int64_t len, bool pad_last) {
  PackerOptions o;
  o.sequence_length = len;
  o.eos_id = kEos;
  o.pad_id = kPad;
  o.pad_last = pad_last;
  auto p = SequencePacker::Create(o);
  EXPECT_TRUE(p.ok());
  return *std::move(p);
}

TEST(SequencePackerTest, EosBetweenDocumentsAndDocumentsSpanSequences) {
  SequencePacker p = MakePacker(4, /*pad_last=*/true);
  p.AddDocument({1, 2});
  PackedSequence s;
  EXPECT_FALSE(p.Next(&s));  // 3 tokens buffered
  p.AddDocument({3, 4, 5, 6});
  ASSERT_TRUE(p.Next(&s));
  EXPECT_THAT(s.tokens, ElementsAre(1, 2, kEos, 3));
  EXPECT_THAT(s.mask, ElementsAre(1, 1, 1, 1));
  EXPECT_EQ(s.index, 0);
  ASSERT_TRUE(p.Next(&s));  // 4 5 6 EOS: the second document's end
  EXPECT_THAT(s.tokens, ElementsAre(4, 5, 6, kEos));
  EXPECT_EQ(s.index, 1);
  EXPECT_FALSE(p.Next(&s));
  EXPECT_EQ(p.buffered_tokens(), 0);
}

TEST(SequencePackerTest, ExactFitEndsWithEos) {
  SequencePacker p = MakePacker(4, /*pad_last=*/true);
  p.AddDocument({1, 2, 3});
  PackedSequence s;
  ASSERT_TRUE(p.Next(&s));
  EXPECT_THAT(s.tokens, ElementsAre(1, 2, 3, kEos));
  EXPECT_FALSE(p.Next(&s));
  EXPECT_FALSE(p.Finish(&s));  // nothing left
  EXPECT_EQ(p.sequences_emitted(), 1);
}

TEST(SequencePackerTest, LastPartialIsPaddedWithMask) {
  SequencePacker p = MakePacker(5, /*pad_last=*/true);
  p.AddDocument({1, 2, 3, 4, 5, 6});
  PackedSequence s;
  ASSERT_TRUE(p.Next(&s));
  EXPECT_THAT(s.tokens, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_FALSE(p.Next(&s));
  ASSERT_TRUE(p.Finish(&s));
  EXPECT_THAT(s.tokens, ElementsAre(6, kEos, kPad, kPad, kPad));
  EXPECT_THAT(s.mask, ElementsAre(1, 1, 0, 0, 0));
  EXPECT_EQ(s.real_tokens, 2);
  EXPECT_EQ(s.index, 1);
  EXPECT_FALSE(p.Finish(&s));
}

TEST(SequencePackerTest, LastPartialIsDroppedAndCounted) {
  SequencePacker p = MakePacker(5, /*pad_last=*/false);
  p.AddDocument({1, 2, 3, 4, 5, 6});
  PackedSequence s;
  ASSERT_TRUE(p.Next(&s));
  EXPECT_FALSE(p.Finish(&s));
  EXPECT_EQ(p.tokens_dropped(), 2);
  EXPECT_EQ(p.buffered_tokens(), 0);
}

TEST(SequencePackerTest, EveryTokenAppearsOnceInOrderAcrossManyDocuments) {
  SequencePacker p = MakePacker(7, /*pad_last=*/true);
  std::vector<int32_t> expected;
  std::vector<int32_t> got;
  PackedSequence s;
  int32_t next = 1;
  for (int d = 0; d < 200; ++d) {
    std::vector<int32_t> doc;
    for (int k = 0; k < d % 13; ++k) doc.push_back(next++);
    expected.insert(expected.end(), doc.begin(), doc.end());
    expected.push_back(kEos);
    p.AddDocument(doc);
    while (p.Next(&s)) {
      ASSERT_EQ(s.tokens.size(), 7u);
      got.insert(got.end(), s.tokens.begin(), s.tokens.end());
    }
  }
  if (p.Finish(&s)) {
    got.insert(got.end(), s.tokens.begin(), s.tokens.begin() + s.real_tokens);
  }
  EXPECT_EQ(got, expected);
}

TEST(SequencePackerTest, RejectsBadLength) {
  PackerOptions o;
  o.sequence_length = 0;
  EXPECT_EQ(SequencePacker::Create(o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lft
