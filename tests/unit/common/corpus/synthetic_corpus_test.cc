#include "common/corpus/synthetic_corpus.h"

#include <map>
#include <regex>
#include <string>

#include "common/corpus/corpus_sharder.h"
#include "common/corpus/jsonl_zst.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/corpus/data_test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

TEST(SyntheticCorpusTest, SameSeedSameBytesDifferentSeedDifferentBytes) {
  TempDir dir;
  SyntheticCorpusOptions o;
  o.seed = 5;
  o.documents = 300;
  o.train_shards = 2;
  auto a = WriteSyntheticCorpus(dir.File("a"), o);
  auto b = WriteSyntheticCorpus(dir.File("b"), o);
  o.seed = 6;
  auto c = WriteSyntheticCorpus(dir.File("c"), o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok()) << a.status();
  ASSERT_EQ(a->files, b->files);
  for (const std::string& f : a->files) {
    EXPECT_EQ(ReadFileBytes(dir.File("a/" + f)),
              ReadFileBytes(dir.File("b/" + f)))
        << f;
  }
  EXPECT_NE(ReadFileBytes(dir.File("a/train/00.jsonl.zst")),
            ReadFileBytes(dir.File("c/train/00.jsonl.zst")));
  EXPECT_THAT(ReadFileBytes(dir.File("a/MANIFEST.md")),
              HasSubstr("--seed 5 --documents 300"));
}

TEST(SyntheticCorpusTest, FilesHoldEveryDocumentOnceWithAllSubsets) {
  TempDir dir;
  SyntheticCorpusOptions o;
  o.seed = 11;
  o.documents = 500;
  o.train_shards = 3;
  auto stats = WriteSyntheticCorpus(dir.path(), o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  auto files = ListJsonlZstFiles(dir.path());
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 5u);  // 3 train + val + test
  std::map<std::string, int> subsets;
  int64_t total = 0, bytes = 0;
  for (const std::string& f : *files) {
    auto reader = JsonlZstReader::Open(f);
    ASSERT_TRUE(reader.ok());
    JsonlDocument doc;
    while (true) {
      auto got = (*reader)->Next(&doc);
      ASSERT_TRUE(got.ok()) << got.status();
      if (!*got) break;
      ++subsets[doc.pile_set_name];
      ++total;
      bytes += static_cast<int64_t>(doc.text.size());
      EXPECT_FALSE(doc.text.empty());
    }
  }
  EXPECT_EQ(total, 500);
  EXPECT_EQ(bytes, stats->text_bytes);
  EXPECT_EQ(subsets.size(), 5u);
  for (const char* name :
       {"SyntheticEnglish", "SyntheticMath", "SyntheticKeyValue",
        "SyntheticBrackets", "SyntheticCode"}) {
    EXPECT_GT(subsets[name], 20) << name;
  }
}

// The answers embedded in the text are correct, so a model can learn them.
TEST(SyntheticCorpusTest, ArithmeticAnswersAreCorrect) {
  std::regex add(R"(Question: What is (\d+) \+ (\d+)\?\nAnswer: (-?\d+))");
  std::regex kv_record(R"((\w+) = (\S+))");
  int checked = 0;
  for (int64_t i = 0; i < 200; ++i) {
    SyntheticDocument doc = MakeSyntheticDocument(3, i);
    EXPECT_EQ(doc.text, MakeSyntheticDocument(3, i).text);
    if (doc.pile_set_name != "SyntheticMath") continue;
    for (std::sregex_iterator it(doc.text.begin(), doc.text.end(), add), end;
         it != end; ++it) {
      EXPECT_EQ(std::stol((*it)[1]) + std::stol((*it)[2]), std::stol((*it)[3]));
      ++checked;
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(SyntheticCorpusTest, SplitFractionsAreAboutTwoPercent) {
  int counts[3] = {0, 0, 0};
  for (int64_t i = 0; i < 20000; ++i) ++counts[SyntheticDocumentSplit(9, i)];
  EXPECT_NEAR(counts[1] / 20000.0, 0.02, 0.005);
  EXPECT_NEAR(counts[2] / 20000.0, 0.02, 0.005);
}

TEST(SyntheticCorpusTest, RejectsBadOptions) {
  TempDir dir;
  SyntheticCorpusOptions o;
  o.documents = 0;
  EXPECT_EQ(WriteSyntheticCorpus(dir.path(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lft
