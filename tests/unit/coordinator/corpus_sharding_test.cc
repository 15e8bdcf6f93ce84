#include "coordinator/corpus_sharding.h"

#include <zstd.h>

#include <fstream>

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

}  // namespace
}  // namespace lft
