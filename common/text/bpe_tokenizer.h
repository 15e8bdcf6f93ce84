// The GPT-NeoX byte-level BPE tokenizer, read from a HuggingFace
// `tokenizer.json`, producing the same ids as HF `tokenizers`.
//
// Pipeline (as HF runs it): added/special tokens are split out first (tokens
// with normalized=false on the raw text, then normalized=true ones on the
// normalized text, honouring lstrip/rstrip/single_word); each remaining piece
// is normalized (null or NFC), pre-tokenized by ByteLevel (optional prefix
// space, the GPT-2 regex implemented by hand over Unicode category tables,
// bytes mapped to printable characters), and each pre-token word is merged
// by BPE rank. Decoding maps the characters back to bytes (ByteLevel
// decoder) and replaces invalid UTF-8 with U+FFFD.
//
// Supported tokenizer.json subset: model BPE (merges as "a b" strings or
// ["a", "b"] arrays; dropout null; no continuing_subword_prefix /
// end_of_word_suffix; optional unk_token and ignore_merges), normalizer null
// / NFC / Sequence of NFC, pre_tokenizer ByteLevel, decoder ByteLevel or
// null. The post_processor is not applied (GPT-NeoX's ByteLevel one only
// adjusts offsets). Anything else is rejected with Unimplemented.
#ifndef LFT_COMMON_TEXT_BPE_TOKENIZER_H_
#define LFT_COMMON_TEXT_BPE_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lft {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// Splits `text` the way the GPT-2 pre-tokenizer regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does, returning the byte ranges [begin, end) of the matches (which tile
// the text). Exposed for tests.
std::vector<std::pair<size_t, size_t>> SplitGpt2Pretokens(
    absl::string_view text);

// GPT-2's bytes_to_unicode(): the printable character that stands for byte
// `b` (0..255) in a byte-level vocabulary. Printable bytes map to themselves,
// the rest to U+0100 upwards in byte order.
char32_t ByteToUnicode(int b);

class BpeTokenizer {
 public:
  // Parses a tokenizer.json file / its contents. NotFound etc. when the file
  // cannot be read; InvalidArgument for malformed JSON or inconsistent
  // vocab/merges (the message names the field); Unimplemented for a
  // component this implementation does not support.
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromFile(
      const std::string& path);
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> FromJson(
      absl::string_view json);

  // A tokenizer sharing this one's (immutable) vocabulary with an empty
  // cache; give each thread its own.
  std::unique_ptr<BpeTokenizer> Clone() const;

  // Appends the ids of `text` to *ids. Never fails: invalid UTF-8 bytes are
  // still encoded byte-wise. Not thread-safe (the word cache is mutated);
  // use one Clone() per thread.
  void Encode(absl::string_view text, std::vector<int32_t>* ids);
  std::vector<int32_t> Encode(absl::string_view text);

  // The text of `ids`. Unknown ids are skipped; special added tokens are
  // skipped when skip_special_tokens. Thread-safe.
  std::string Decode(absl::Span<const int32_t> ids,
                     bool skip_special_tokens = false) const;

  // Size of the id space: max id + 1 over the vocab and added tokens.
  int32_t vocab_size() const;
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // The token string (byte-level characters) for `id`, empty if unknown.
  std::string IdToToken(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // Words cached so far (for tests and stats).
  size_t cache_size() const { return cache_.size(); }

  struct Model;  // immutable vocabulary, merges and options

 private:
  explicit BpeTokenizer(std::shared_ptr<const Model> model);
  // Encodes one piece that contains no added token.
  void EncodePiece(absl::string_view piece, std::vector<int32_t>* ids);
  void EncodeWord(absl::string_view word, std::vector<int32_t>* ids);

  std::shared_ptr<const Model> model_;
  absl::flat_hash_map<std::string, std::vector<int32_t>> cache_;
  std::string scratch_;
};

}  // namespace lft

#endif  // LFT_COMMON_TEXT_BPE_TOKENIZER_H_
