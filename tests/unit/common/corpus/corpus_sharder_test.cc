#include "common/corpus/corpus_sharder.h"

#include <filesystem>
#include <string>
#include <vector>

#include "common/corpus/indexed_dataset.h"
#include "common/corpus/jsonl_zst.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/corpus/data_test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

TEST(CorpusSharderTest, ShardsCoverEveryDocumentOnceAndAreDeterministic) {
  std::vector<CorpusFile> files = {{"a", 10}, {"b", 0}, {"c", 3}, {"d", 4}};
  auto shards = CorpusSharder::MakeShards(files, 4);
  ASSERT_TRUE(shards.ok());
  std::vector<ShardTask> expected = {{0, "a", 0, 4},
                                     {1, "a", 4, 8},
                                     {2, "a", 8, 10},
                                     {3, "c", 0, 3},
                                     {4, "d", 0, 4}};
  EXPECT_EQ(*shards, expected);
  EXPECT_EQ(*CorpusSharder::MakeShards(files, 4), *shards);
  EXPECT_EQ(CorpusSharder::MakeShards(files, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CorpusSharderTest, CountsJsonlAndMegatronFiles) {
  TempDir dir;
  std::filesystem::create_directories(dir.File("sub"));
  for (const auto& [name, n] : std::vector<std::pair<std::string, int>>{
           {"sub/b.jsonl.zst", 7}, {"a.jsonl.zst", 3}}) {
    auto w = JsonlZstWriter::Open(dir.File(name));
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < n; ++i) ASSERT_TRUE((*w)->Write("t", "S").ok());
    ASSERT_TRUE((*w)->Close().ok());
  }
  auto mw = IndexedDatasetWriter::Open(dir.File("mega"), IndexedDtype::kUint16);
  ASSERT_TRUE(mw.ok());
  for (int d = 0; d < 5; ++d) {
    ASSERT_TRUE((*mw)->AddSequence({1, 2}).ok());
    (*mw)->EndDocument();
  }
  ASSERT_TRUE((*mw)->Close().ok());

  auto listed = ListJsonlZstFiles(dir.path());
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0], dir.File("a.jsonl.zst"));
  EXPECT_EQ((*listed)[1], dir.File("sub/b.jsonl.zst"));
  std::vector<std::string> paths = *listed;
  paths.push_back(dir.File("mega"));
  auto counted = CorpusSharder::CountDocuments(paths);
  ASSERT_TRUE(counted.ok()) << counted.status();
  EXPECT_EQ((*counted)[0].documents, 3);
  EXPECT_EQ((*counted)[1].documents, 7);
  EXPECT_EQ((*counted)[2].documents, 5);

  auto missing = CorpusSharder::CountDocuments({dir.File("nope.jsonl.zst")});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ListJsonlZstFiles(dir.File("nodir")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace lft
