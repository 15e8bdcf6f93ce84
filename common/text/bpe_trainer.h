// Trains a GPT-NeoX-style byte-level BPE tokenizer from text and writes it
// as an HF `tokenizer.json` that both lft's BpeTokenizer and HF `tokenizers`
// load (NFC normalizer, ByteLevel pre-tokenizer and decoder, BPE model with
// the special tokens <|endoftext|> = 0 and <|padding|> = 1 as Pythia has).
//
// Algorithm: the text is NFC-normalized and split by the GPT-2 pre-tokenizer
// regex; each distinct word starts as its bytes; the most frequent adjacent
// pair (ties: the smaller pair of ids) is merged into a new token until the
// vocabulary is full or no pair occurs min_frequency times. Pair counts are
// kept incrementally with a lazily-invalidated heap, so a merge costs time
// in the words that contain the pair, not in the whole corpus.
#ifndef LFT_COMMON_TEXT_BPE_TRAINER_H_
#define LFT_COMMON_TEXT_BPE_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lft {

struct BpeTrainerOptions {
  // Including the special tokens and the 256-byte alphabet.
  int32_t vocab_size = 4096;
  int64_t min_frequency = 2;
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|padding|>"};
};

// Not thread-safe.
class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options)
      : options_(std::move(options)) {}

  // Counts the pre-token words of `text`.
  void AddText(absl::string_view text);
  int64_t distinct_words() const {
    return static_cast<int64_t>(word_counts_.size());
  }

  // The trained tokenizer.json. InvalidArgument if vocab_size cannot hold
  // the specials and the byte alphabet.
  absl::StatusOr<std::string> TrainToJson() const;

 private:
  const BpeTrainerOptions options_;
  absl::flat_hash_map<std::string, int64_t> word_counts_;
};

}  // namespace lft

#endif  // LFT_COMMON_TEXT_BPE_TRAINER_H_
