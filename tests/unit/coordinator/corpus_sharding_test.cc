#include <zstd.h>

#include <fstream>

#include "tests/unit/coordinator/line_count_sharding.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

void WriteZstd(const std::string& path, const std::string& text) {
  std::string out(ZSTD_compressBound(text.size()), '\0');
  out.resize(
      ZSTD_compress(out.data(), out.size(), text.data(), text.size(), 3));
  std::ofstream(path, std::ios::binary) << out;
}

std::string Lines(int n, bool trailing_newline = true) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    s += "{\"text\": \"document " + std::to_string(i) + "\"}";
    if (i + 1 < n || trailing_newline) s += "\n";
  }
  return s;
}

TEST(CorpusShardingTest, CountsLinesIncludingUnterminatedLast) {
  TempDir dir;
  WriteZstd(dir.path() + "/a.jsonl.zst", Lines(1000));
  WriteZstd(dir.path() + "/b.jsonl.zst", Lines(7, false));
  EXPECT_EQ(*CountZstdLines(dir.path() + "/a.jsonl.zst"), 1000u);
  EXPECT_EQ(*CountZstdLines(dir.path() + "/b.jsonl.zst"), 7u);
}

TEST(CorpusShardingTest, SplitsFilesIntoDocumentRangesWithGlobalShardIndex) {
  TempDir dir;
  WriteZstd(dir.path() + "/a.jsonl.zst", Lines(25));
  WriteZstd(dir.path() + "/b.jsonl.zst", Lines(10));
  lft::v1::CorpusSpec c;
  c.add_jsonl_zst_paths(dir.path() + "/a.jsonl.zst");
  c.add_jsonl_zst_paths(dir.path() + "/b.jsonl.zst");
  c.set_documents_per_shard(10);
  LineCountSharding s;
  auto tasks = s.Shard(c);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), 4u);
  EXPECT_EQ((*tasks)[2].first_document(), 20u);
  EXPECT_EQ((*tasks)[2].end_document(), 25u);
  EXPECT_EQ((*tasks)[3].corpus_path(), dir.path() + "/b.jsonl.zst");
  for (size_t i = 0; i < tasks->size(); ++i)
    EXPECT_EQ((*tasks)[i].shard_index(), i);
}

TEST(CorpusShardingTest, MissingCorruptAndTruncatedFilesAreNamed) {
  TempDir dir;
  lft::v1::CorpusSpec c;
  c.add_jsonl_zst_paths(dir.path() + "/absent.jsonl.zst");
  LineCountSharding s;
  EXPECT_THAT(s.Shard(c), StatusIs(absl::StatusCode::kNotFound,
                                   "corpus.jsonl_zst_paths[0]: corpus file"));
  std::ofstream(dir.path() + "/junk.jsonl.zst") << "this is not zstd";
  EXPECT_THAT(
      CountZstdLines(dir.path() + "/junk.jsonl.zst"),
      StatusIs(absl::StatusCode::kInvalidArgument, "is not valid zstd"));
  WriteZstd(dir.path() + "/full.zst", Lines(500));
  std::ifstream in(dir.path() + "/full.zst", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  std::ofstream(dir.path() + "/cut.zst", std::ios::binary)
      << bytes.substr(0, bytes.size() / 2);
  EXPECT_THAT(CountZstdLines(dir.path() + "/cut.zst"),
              StatusIs(absl::StatusCode::kInvalidArgument, "truncated"));
}

// The coordinator's sharding (the data library's sharder) gives the same
// tasks as LineCountSharding for jsonl files, including an unterminated last
// line and an empty file.
TEST(CorpusShardingTest, CorpusSharderShardingMatchesLineCountForJsonl) {
  TempDir dir;
  WriteZstd(dir.path() + "/a.jsonl.zst", Lines(25));
  WriteZstd(dir.path() + "/e.jsonl.zst", "");
  WriteZstd(dir.path() + "/b.jsonl.zst", Lines(13, false));
  lft::v1::CorpusSpec c;
  for (const char* f : {"/a.jsonl.zst", "/e.jsonl.zst", "/b.jsonl.zst"})
    c.add_jsonl_zst_paths(dir.path() + f);
  c.set_documents_per_shard(10);
  LineCountSharding old_sharding;
  CorpusSharderSharding new_sharding;
  auto want = old_sharding.Shard(c);
  auto got = new_sharding.Shard(c);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 5u);
  ASSERT_EQ(got->size(), want->size());
  for (size_t i = 0; i < got->size(); ++i) {
    EXPECT_EQ((*got)[i].SerializeAsString(), (*want)[i].SerializeAsString())
        << i;
  }
  EXPECT_EQ((*got)[4].end_document(), 13u);
}

TEST(CorpusShardingTest, CorpusSharderShardingNamesTheField) {
  TempDir dir;
  lft::v1::CorpusSpec c;
  WriteZstd(dir.path() + "/a.jsonl.zst", Lines(3));
  c.add_jsonl_zst_paths(dir.path() + "/a.jsonl.zst");
  c.add_jsonl_zst_paths(dir.path() + "/absent.jsonl.zst");
  CorpusSharderSharding s;
  auto r = s.Shard(c);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("corpus.jsonl_zst_paths[1]: "));
  EXPECT_THAT(std::string(r.status().message()),
              ::testing::HasSubstr("absent.jsonl.zst"));
  lft::v1::CorpusSpec empty;
  WriteZstd(dir.path() + "/e.jsonl.zst", "");
  empty.add_jsonl_zst_paths(dir.path() + "/e.jsonl.zst");
  EXPECT_THAT(s.Shard(empty), StatusIs(absl::StatusCode::kInvalidArgument,
                                       "hold no documents"));
}

}  // namespace
}  // namespace lft
