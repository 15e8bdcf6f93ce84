#include "common/corpus/shard_reader.h"

#include <string>
#include <vector>

#include "common/text/bpe_tokenizer.h"
#include "common/text/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/unit/common/corpus/data_test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

// A merge-free byte-level tokenizer: id == byte value.
std::unique_ptr<BpeTokenizer> ByteTokenizer() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(ByteToUnicode(b), &s);
    vocab[s] = b;
  }
  nlohmann::json j = {
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", nlohmann::json::array()},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", nlohmann::json::array()}}}};
  auto tok = BpeTokenizer::FromJson(j.dump());
  EXPECT_TRUE(tok.ok()) << tok.status();
  return *std::move(tok);
}

TEST(ShardDocumentReaderTest, JsonlShardsYieldEachDocumentOnceTokenized) {
  TempDir dir;
  std::string path = dir.File("c.jsonl.zst");
  auto w = JsonlZstWriter::Open(path);
  ASSERT_TRUE(w.ok());
  for (int i = 0; i < 10; ++i) {
    if (i == 4) {
      ASSERT_TRUE((*w)->WriteRawLine("{broken").ok());
    } else {
      ASSERT_TRUE((*w)->Write("doc " + std::to_string(i), "S").ok());
    }
  }
  ASSERT_TRUE((*w)->Close().ok());
  auto files = CorpusSharder::CountDocuments({path});
  ASSERT_TRUE(files.ok());
  auto tasks = CorpusSharder::MakeShards(*files, 3);
  ASSERT_TRUE(tasks.ok());
  ASSERT_EQ(tasks->size(), 4u);
  auto tok = ByteTokenizer();
  std::vector<int64_t> seen;
  int errors = 0;
  for (const ShardTask& task : *tasks) {
    JsonlReaderOptions options;
    options.max_errors = 1;
    auto r = ShardDocumentReader::Open(task, tok.get(), options);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<int32_t> ids;
    int64_t index;
    while (true) {
      auto got = (*r)->Next(&ids, &index);
      ASSERT_TRUE(got.ok()) << got.status();
      if (!*got) break;
      EXPECT_GE(index, task.first_document);
      EXPECT_LT(index, task.end_document);
      EXPECT_EQ(tok->Decode(ids), "doc " + std::to_string(index));
      seen.push_back(index);
    }
    errors += static_cast<int>((*r)->errors().size());
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 5, 6, 7, 8, 9}));
  EXPECT_EQ(errors, 1);  // line 5, in shard 1 only

  // A bad line that opens the next shard is not read by this one.
  ShardTask first{0, path, 0, 4};
  auto r = ShardDocumentReader::Open(first, tok.get());  // budget 0
  ASSERT_TRUE(r.ok());
  std::vector<int32_t> ids;
  int64_t index;
  int n = 0;
  while (true) {
    auto got = (*r)->Next(&ids, &index);
    ASSERT_TRUE(got.ok()) << got.status();
    if (!*got) break;
    ++n;
  }
  EXPECT_EQ(n, 4);
  EXPECT_EQ(ShardDocumentReader::Open((*tasks)[0], nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ShardDocumentReaderTest, MegatronShards) {
  TempDir dir;
  std::string prefix = dir.File("m");
  auto w = IndexedDatasetWriter::Open(prefix, IndexedDtype::kUint16);
  ASSERT_TRUE(w.ok());
  for (int d = 0; d < 7; ++d) {
    ASSERT_TRUE((*w)->AddSequence({d, d + 1}).ok());
    ASSERT_TRUE((*w)->AddSequence({100}).ok());
    (*w)->EndDocument();
  }
  ASSERT_TRUE((*w)->Close().ok());
  auto tasks = CorpusSharder::MakeShards({{prefix, 7}}, 4);
  ASSERT_TRUE(tasks.ok());
  std::vector<int64_t> seen;
  for (const ShardTask& task : *tasks) {
    auto r = ShardDocumentReader::Open(task, nullptr);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<int32_t> ids;
    int64_t index;
    while (*(*r)->Next(&ids, &index)) {
      EXPECT_EQ(ids,
                (std::vector<int32_t>{static_cast<int32_t>(index),
                                      static_cast<int32_t>(index + 1), 100}));
      seen.push_back(index);
    }
  }
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  ShardTask too_far{0, prefix, 5, 9};
  auto r = ShardDocumentReader::Open(too_far, nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(r.status().message(), HasSubstr("has 7"));
}

}  // namespace
}  // namespace lft
