#include "common/text/bpe_tokenizer.h"

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/env.h"
#include "common/corpus/jsonl_zst.h"
#include "common/text/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A tiny byte-level tokenizer.json: ids 0..255 are the byte alphabet in byte
// order, then six merges building "hello" and " the", then two specials.
std::string TinyTokenizerJson(bool array_merges, bool add_prefix_space,
                              const std::string& extra_added = "") {
  nlohmann::json vocab = nlohmann::json::object();
  auto byte_char = [](int b) {
    std::string s;
    AppendUtf8(ByteToUnicode(b), &s);
    return s;
  };
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"},   {"l", "l"},   {"Ġ", "t"},
      {"Ġt", "he"}, {"he", "ll"}, {"hell", "o"}};
  int id = 256;
  nlohmann::json merges_json = nlohmann::json::array();
  for (const auto& [a, b] : merges) {
    vocab[a + b] = id++;
    if (array_merges) {
      merges_json.push_back({a, b});
    } else {
      merges_json.push_back(a + " " + b);
    }
  }
  std::string added = R"([
    {"id": 262, "content": "<|endoftext|>", "single_word": false,
     "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 263, "content": "<|padding|>", "single_word": false,
     "lstrip": false, "rstrip": false, "normalized": false, "special": true})" +
                      extra_added + "]";
  nlohmann::json j = {{"version", "1.0"},
                      {"normalizer", {{"type", "NFC"}}},
                      {"pre_tokenizer",
                       {{"type", "ByteLevel"},
                        {"add_prefix_space", add_prefix_space},
                        {"trim_offsets", true},
                        {"use_regex", true}}},
                      {"decoder", {{"type", "ByteLevel"}}},
                      {"model",
                       {{"type", "BPE"},
                        {"dropout", nullptr},
                        {"unk_token", nullptr},
                        {"vocab", vocab},
                        {"merges", merges_json}}}};
  j["added_tokens"] = nlohmann::json::parse(added);
  return j.dump();
}

TEST(SplitGpt2PretokensTest, MatchesTheRegexAlternatives) {
  std::string text = "I'm  here\n\n 12abc!! x's";
  std::vector<std::string> words;
  for (auto [b, e] : SplitGpt2Pretokens(text)) {
    words.push_back(text.substr(b, e - b));
  }
  EXPECT_THAT(words, ElementsAre("I", "'m", " ", " here", "\n\n", " 12", "abc",
                                 "!!", " x", "'s"));
}

TEST(SplitGpt2PretokensTest, TrailingWhitespaceAndUnicodeClasses) {
  std::string text =
      "caf\xC3\xA9  \xD9\xA1\xD9\xA2 \xE2\x80\x83";  // café  ١٢ em-space
  std::vector<std::string> words;
  for (auto [b, e] : SplitGpt2Pretokens(text)) {
    words.push_back(text.substr(b, e - b));
  }
  EXPECT_THAT(words, ElementsAre("caf\xC3\xA9", " ", " \xD9\xA1\xD9\xA2",
                                 " \xE2\x80\x83"));
}

TEST(BpeTokenizerTest, TinyTokenizerHandComputedIds) {
  for (bool array_merges : {false, true}) {
    auto tok = BpeTokenizer::FromJson(TinyTokenizerJson(array_merges, false));
    ASSERT_TRUE(tok.ok()) << tok.status();
    // "hello" -> h e l l o -> he ll o -> hell o -> hello (261);
    // " the" -> Ġ t h e -> Ġ t he -> Ġt he -> Ġthe (259); special 262;
    // " hell" -> Ġ hell (32, 260).
    EXPECT_THAT((*tok)->Encode("hello the<|endoftext|> hell"),
                ElementsAre(261, 259, 262, 32, 260));
    EXPECT_EQ((*tok)->Decode({261, 259, 262, 32, 260}),
              "hello the<|endoftext|> hell");
    EXPECT_EQ((*tok)->Decode({261, 262, 32, 260}, /*skip_special_tokens=*/true),
              "hello hell");
    EXPECT_EQ((*tok)->vocab_size(), 264);
    EXPECT_EQ((*tok)->TokenToId("<|padding|>").value_or(-1), 263);
    EXPECT_EQ((*tok)->IdToToken(259), "Ġthe");
  }
}

TEST(BpeTokenizerTest, AddPrefixSpaceAppliesToEachPiece) {
  auto tok = BpeTokenizer::FromJson(TinyTokenizerJson(false, true));
  ASSERT_TRUE(tok.ok()) << tok.status();
  // "the" gets a prefix space -> Ġthe; so does the piece after the special.
  EXPECT_THAT((*tok)->Encode("the<|endoftext|>the"),
              ElementsAre(259, 262, 259));
  // An empty text stays empty (no prefix space token).
  EXPECT_TRUE((*tok)->Encode("").empty());
  // Already starting with a space: no second one.
  EXPECT_THAT((*tok)->Encode(" the"), ElementsAre(259));
}

TEST(BpeTokenizerTest, LstripRstripAddedToken) {
  auto tok = BpeTokenizer::FromJson(TinyTokenizerJson(
      false, false,
      R"(, {"id": 264, "content": "<m>", "single_word": false, "lstrip": true,
           "rstrip": true, "normalized": false, "special": true})"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  // The spaces around <m> are absorbed into it.
  EXPECT_THAT((*tok)->Encode("hello  <m>  hello"), ElementsAre(261, 264, 261));
}

TEST(BpeTokenizerTest, InvalidUtf8IsEncodedBytewiseAndDecodedLossy) {
  auto tok = BpeTokenizer::FromJson(TinyTokenizerJson(false, false));
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<int32_t> ids = (*tok)->Encode("a\xFF");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ((*tok)->Decode(ids), "a\xEF\xBF\xBD");
}

TEST(BpeTokenizerTest, RejectsBadTokenizerJson) {
  auto bad_json = BpeTokenizer::FromJson("{not json");
  EXPECT_EQ(bad_json.status().code(), absl::StatusCode::kInvalidArgument);

  nlohmann::json j = nlohmann::json::parse(TinyTokenizerJson(false, false));
  j["model"]["merges"].push_back("h zz");
  auto bad_merge = BpeTokenizer::FromJson(j.dump());
  EXPECT_EQ(bad_merge.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_merge.status().message(), HasSubstr("merges[6]"));

  j = nlohmann::json::parse(TinyTokenizerJson(false, false));
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_EQ(BpeTokenizer::FromJson(j.dump()).status().code(),
            absl::StatusCode::kUnimplemented);

  j = nlohmann::json::parse(TinyTokenizerJson(false, false));
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(BpeTokenizer::FromJson(j.dump()).status().code(),
            absl::StatusCode::kUnimplemented);

  EXPECT_EQ(
      BpeTokenizer::FromFile("/nonexistent/tokenizer.json").status().code(),
      absl::StatusCode::kNotFound);

  // An id far beyond the tokens defined would size the id table by it
  // (found by tokenizer_json_fuzzer: 2 GiB from a 1268-byte file).
  j = nlohmann::json::parse(TinyTokenizerJson(false, false));
  j["model"]["vocab"]["zz"] = 1 << 29;
  auto sparse = BpeTokenizer::FromJson(j.dump());
  EXPECT_EQ(sparse.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sparse.status().message(), HasSubstr("far beyond"));
}

std::string SrcDir() {
  const char* d = std::getenv("LFT_TEST_SRCDIR");
  return d == nullptr ? "." : d;
}

// HF tokenizers' ids for 57 texts (hand-picked edge cases and val-split
// documents) from tests/fixtures/make_fixtures.py.
TEST(BpeTokenizerTest, MatchesHuggingFaceOnFixture) {
  std::string dir = SrcDir() + "/tests/fixtures/tokenizer/";
  auto tok = BpeTokenizer::FromFile(dir + "tokenizer.json");
  if (!tok.ok() && tok.status().code() == absl::StatusCode::kNotFound) {
    GTEST_SKIP() << "fixture tests/fixtures/tokenizer/ is absent";
  }
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto reader = JsonlZstReader::Open(dir + "expected.jsonl.zst");
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::string line;
  int cases = 0;
  while (true) {
    auto got = (*reader)->NextRawLine(&line);
    ASSERT_TRUE(got.ok()) << got.status();
    if (!*got) break;
    nlohmann::json j = nlohmann::json::parse(line);
    std::string text = j["text"].get<std::string>();
    std::vector<int32_t> expected = j["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> ids = (*tok)->Encode(text);
    EXPECT_EQ(ids, expected) << "case " << cases << ": " << text.substr(0, 80);
    // Decoding gives back the NFC form (equal to the text unless it was
    // not NFC, like "cafe\u0301").
    EXPECT_EQ((*tok)->Decode(ids), NfcNormalize(text)) << "case " << cases;
    ++cases;
  }
  EXPECT_EQ(cases, 57);
}

// Round trip over a real corpus's val split when $LFT_TEST_PILE_CORPUS names
// one (not in CI).
TEST(BpeTokenizerTest, RoundTripsSharedCorpusValIfPresent) {
  const char* dir = std::getenv(kEnvTestPileCorpus);
  const std::string corpus =
      dir != nullptr ? std::string(dir) + "/val.jsonl.zst" : "";
  if (corpus.empty() || !std::ifstream(corpus).good())
    GTEST_SKIP() << "set " << kEnvTestPileCorpus << " to a corpus directory";
  auto tok = BpeTokenizer::FromFile(SrcDir() +
                                    "/tests/fixtures/tokenizer/tokenizer.json");
  if (!tok.ok()) GTEST_SKIP() << "fixture tests/fixtures/tokenizer/ is absent";
  auto reader = JsonlZstReader::Open(corpus);
  ASSERT_TRUE(reader.ok());
  JsonlDocument doc;
  int docs = 0;
  while (*(*reader)->Next(&doc)) {
    std::vector<int32_t> ids = (*tok)->Encode(doc.text);
    ASSERT_EQ((*tok)->Decode(ids), NfcNormalize(doc.text)) << doc.line_number;
    ++docs;
  }
  EXPECT_GT(docs, 0);
}

}  // namespace
}  // namespace lft
