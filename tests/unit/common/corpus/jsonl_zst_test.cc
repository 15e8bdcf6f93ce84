#include "common/corpus/jsonl_zst.h"

#include <zstd.h>

#include <string>
#include <vector>

#include "common/base/env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/corpus/data_test_util.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

// Reads every document; returns the status of the first failing Next().
absl::Status ReadAll(JsonlZstReader* reader, std::vector<JsonlDocument>* docs) {
  while (true) {
    JsonlDocument doc;
    auto got = reader->Next(&doc);
    if (!got.ok()) return got.status();
    if (!*got) return absl::OkStatus();
    docs->push_back(std::move(doc));
  }
}

// One zstd frame with a content checksum (as the zstd CLI writes).
std::string Compress(const std::string& raw, int level = 3) {
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  size_t n =
      ZSTD_compress2(cctx, out.data(), out.size(), raw.data(), raw.size());
  ZSTD_freeCCtx(cctx);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

TEST(JsonlZstTest, RoundTripKeepsTextMetaFileAndLine) {
  TempDir dir;
  std::string path = dir.File("a.jsonl.zst");
  auto writer = JsonlZstWriter::Open(path);
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<std::string> texts = {"hello", "line\nbreak \"quoted\" \\",
                                    "caf\xC3\xA9 \xF0\x9F\x98\x80", ""};
  for (size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE((*writer)->Write(texts[i], "Set" + std::to_string(i)).ok());
  }
  ASSERT_TRUE((*writer)->Close().ok());

  auto reader = JsonlZstReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<JsonlDocument> docs;
  ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
  ASSERT_EQ(docs.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(docs[i].text, texts[i]);
    EXPECT_EQ(docs[i].pile_set_name, "Set" + std::to_string(i));
    EXPECT_EQ(docs[i].file, path);
    EXPECT_EQ(docs[i].line_number, static_cast<int64_t>(i) + 1);
  }
  EXPECT_TRUE((*reader)->errors().empty());
  auto count = CountJsonlZstLines(path);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 4);
}

TEST(JsonlZstTest, LongLinesAcrossManyBuffersAndMissingMeta) {
  TempDir dir;
  std::string path = dir.File("big.jsonl.zst");
  std::string big(3 << 20, 'x');  // spans many 128 KiB output buffers
  std::string raw = "{\"text\": \"" + big + "\"}\n{\"text\": \"tail\"}";
  WriteFileBytes(path, Compress(raw));
  JsonlReaderOptions options;
  options.read_buffer_bytes = 4096;
  auto reader = JsonlZstReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  std::vector<JsonlDocument> docs;
  ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].text, big);
  EXPECT_EQ(docs[0].pile_set_name, "");
  EXPECT_EQ(docs[1].text, "tail");  // last line without '\n'
  EXPECT_EQ(docs[1].line_number, 2);
}

TEST(JsonlZstTest, BadJsonLineReportsFileAndLineAndRespectsBudget) {
  TempDir dir;
  std::string path = dir.File("bad.jsonl.zst");
  auto writer = JsonlZstWriter::Open(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write("one", "A").ok());
  ASSERT_TRUE((*writer)->WriteRawLine("{\"text\": \"unterminated").ok());
  ASSERT_TRUE((*writer)->Write("three", "A").ok());
  ASSERT_TRUE((*writer)->WriteRawLine("[1, 2]").ok());
  ASSERT_TRUE((*writer)->WriteRawLine("{\"meta\": {}}").ok());
  ASSERT_TRUE((*writer)->Write("six", "A").ok());
  ASSERT_TRUE((*writer)->Close().ok());

  // Budget 0: the first bad line fails the read, naming file and line 2.
  {
    auto reader = JsonlZstReader::Open(path);
    ASSERT_TRUE(reader.ok());
    std::vector<JsonlDocument> docs;
    absl::Status s = ReadAll(reader->get(), &docs);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(s.message(), HasSubstr(path + ":2: invalid JSON"));
    EXPECT_EQ(docs.size(), 1u);
    // The reader stays failed.
    JsonlDocument doc;
    EXPECT_EQ((*reader)->Next(&doc).status().code(),
              absl::StatusCode::kDataLoss);
  }
  // Budget 3: all three bad lines are skipped and recorded.
  {
    JsonlReaderOptions options;
    options.max_errors = 3;
    auto reader = JsonlZstReader::Open(path, options);
    ASSERT_TRUE(reader.ok());
    std::vector<JsonlDocument> docs;
    ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
    ASSERT_EQ(docs.size(), 3u);
    EXPECT_EQ(docs[2].text, "six");
    EXPECT_EQ(docs[2].line_number, 6);
    ASSERT_EQ((*reader)->errors().size(), 3u);
    EXPECT_EQ((*reader)->errors()[0].line_number, 2);
    EXPECT_EQ((*reader)->errors()[1].line_number, 4);
    EXPECT_THAT((*reader)->errors()[1].message, HasSubstr("not a JSON object"));
    EXPECT_EQ((*reader)->errors()[2].line_number, 5);
    EXPECT_THAT((*reader)->errors()[2].message, HasSubstr("\"text\""));
  }
  // Budget 2: the third bad line (line 5) exceeds it.
  {
    JsonlReaderOptions options;
    options.max_errors = 2;
    auto reader = JsonlZstReader::Open(path, options);
    ASSERT_TRUE(reader.ok());
    std::vector<JsonlDocument> docs;
    absl::Status s = ReadAll(reader->get(), &docs);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(s.message(), HasSubstr(":5:"));
    EXPECT_THAT(s.message(), HasSubstr("max_errors=2"));
  }
}

TEST(JsonlZstTest, OverlongLineIsCountedAndSkipped) {
  TempDir dir;
  std::string path = dir.File("long.jsonl.zst");
  auto writer = JsonlZstWriter::Open(path);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Write(std::string(1000, 'y'), "A").ok());
  ASSERT_TRUE((*writer)->Write("ok", "A").ok());
  ASSERT_TRUE((*writer)->Close().ok());
  JsonlReaderOptions options;
  options.max_line_bytes = 100;
  options.max_errors = 1;
  auto reader = JsonlZstReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  std::vector<JsonlDocument> docs;
  ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].text, "ok");
  EXPECT_EQ(docs[0].line_number, 2);
  ASSERT_EQ((*reader)->errors().size(), 1u);
  EXPECT_THAT((*reader)->errors()[0].message, HasSubstr("max_line_bytes=100"));
}

TEST(JsonlZstTest, TruncatedFileIsDetected) {
  TempDir dir;
  std::string path = dir.File("t.jsonl.zst");
  auto writer = JsonlZstWriter::Open(path);
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(
        (*writer)->Write("document number " + std::to_string(i), "A").ok());
  }
  ASSERT_TRUE((*writer)->Close().ok());
  std::string bytes = ReadFileBytes(path);
  WriteFileBytes(path, bytes.substr(0, bytes.size() * 2 / 3));

  auto reader = JsonlZstReader::Open(path);
  ASSERT_TRUE(reader.ok());
  std::vector<JsonlDocument> docs;
  absl::Status s = ReadAll(reader->get(), &docs);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("truncated"));
  EXPECT_THAT(s.message(), HasSubstr(path));
  // Every document read before the cut is intact.
  for (size_t i = 0; i < docs.size(); ++i) {
    EXPECT_EQ(docs[i].text, "document number " + std::to_string(i));
  }
  EXPECT_EQ(CountJsonlZstLines(path).status().code(),
            absl::StatusCode::kDataLoss);

  // With a budget the truncation is recorded and reading ends cleanly.
  JsonlReaderOptions options;
  options.max_errors = 1;
  auto tolerant = JsonlZstReader::Open(path, options);
  ASSERT_TRUE(tolerant.ok());
  std::vector<JsonlDocument> docs2;
  ASSERT_TRUE(ReadAll(tolerant->get(), &docs2).ok());
  EXPECT_EQ(docs2.size(), docs.size());
  ASSERT_EQ((*tolerant)->errors().size(), 1u);

  // An empty file is reported too.
  WriteFileBytes(path, "");
  auto empty = JsonlZstReader::Open(path);
  ASSERT_TRUE(empty.ok());
  std::vector<JsonlDocument> none;
  EXPECT_EQ(ReadAll(empty->get(), &none).code(), absl::StatusCode::kDataLoss);
}

TEST(JsonlZstTest, CorruptFrameIsSkippedAndLaterFramesAreRead) {
  TempDir dir;
  std::string path = dir.File("c.jsonl.zst");
  // Three frames; the middle one gets garbage in its compressed body.
  std::string f1 = Compress("{\"text\": \"first\"}\n");
  std::string middle;
  uint32_t x = 12345;
  for (int i = 0; i < 20000; ++i) {
    x = x * 1103515245u + 12345u;
    middle.push_back(static_cast<char>('a' + (x >> 16) % 26));
  }
  std::string f2 = Compress("{\"text\": \"" + middle + "\"}\n", 1);
  std::string f3 = Compress("{\"text\": \"third\"}\n");
  for (size_t i = f2.size() / 3; i < f2.size() * 2 / 3; ++i) f2[i] = '\x5a';
  WriteFileBytes(path, f1 + f2 + f3);

  {
    auto reader = JsonlZstReader::Open(path);
    ASSERT_TRUE(reader.ok());
    std::vector<JsonlDocument> docs;
    absl::Status s = ReadAll(reader->get(), &docs);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(s.message(), HasSubstr("corrupt zstd data"));
  }
  JsonlReaderOptions options;
  options.max_errors = 2;
  auto reader = JsonlZstReader::Open(path, options);
  ASSERT_TRUE(reader.ok());
  std::vector<JsonlDocument> docs;
  ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
  ASSERT_GE(docs.size(), 2u);
  EXPECT_EQ(docs.front().text, "first");
  EXPECT_EQ(docs.back().text, "third");
  EXPECT_GE((*reader)->errors().size(), 1u);
  EXPECT_THAT((*reader)->errors()[0].message, HasSubstr("corrupt zstd data"));
}

TEST(JsonlZstTest, SkipToPositionsByLineIndex) {
  TempDir dir;
  std::string path = dir.File("s.jsonl.zst");
  auto writer = JsonlZstWriter::Open(path);
  ASSERT_TRUE(writer.ok());
  for (int i = 0; i < 50000; ++i) {
    ASSERT_TRUE((*writer)->Write("d" + std::to_string(i), "A").ok());
  }
  ASSERT_TRUE((*writer)->Close().ok());
  auto reader = JsonlZstReader::Open(path);
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE((*reader)->SkipTo(41234).ok());
  JsonlDocument doc;
  auto got = (*reader)->Next(&doc);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ(doc.text, "d41234");
  EXPECT_EQ(doc.index(), 41234);
  ASSERT_TRUE((*reader)->SkipTo(1000000).ok());
  got = (*reader)->Next(&doc);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
}

TEST(JsonlZstTest, OpenErrors) {
  EXPECT_EQ(JsonlZstReader::Open("/nonexistent/x.jsonl.zst").status().code(),
            absl::StatusCode::kNotFound);
  JsonlReaderOptions options;
  options.max_line_bytes = 0;
  EXPECT_EQ(JsonlZstReader::Open("/dev/null", options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Reads a real corpus's val split when $LFT_TEST_PILE_CORPUS names one (not
// needed by CI; the counts are those of the project's 271-document split).
TEST(JsonlZstTest, SharedCorpusValSplitIfPresent) {
  const char* corpus = std::getenv(kEnvTestPileCorpus);
  const std::string path =
      corpus != nullptr ? std::string(corpus) + "/val.jsonl.zst" : "";
  if (path.empty() || !std::filesystem::exists(path))
    GTEST_SKIP() << "set " << kEnvTestPileCorpus << " to a corpus directory";
  auto reader = JsonlZstReader::Open(path);
  ASSERT_TRUE(reader.ok());
  std::vector<JsonlDocument> docs;
  ASSERT_TRUE(ReadAll(reader->get(), &docs).ok());
  EXPECT_EQ(docs.size(), 271u);
  for (const auto& d : docs) EXPECT_FALSE(d.pile_set_name.empty());
}

}  // namespace
}  // namespace lft
