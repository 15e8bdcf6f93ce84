// Held-out text for evaluation and analysis: Pile-format *.jsonl.zst files
// (or Megatron prefixes) tokenized with the teacher's tokenizer and packed
// the way extraction packs training text (documents in file order, each
// followed by <|endoftext|>, cut into sequence_length tokens), so held-out
// sequences look like training sequences. Unlike extraction, a short final
// sequence is kept, right-padded with mask 0, so small held-out sets are used
// whole. Torch-free.
#ifndef LFT_WORKER_EVALUATOR_HELDOUT_H_
#define LFT_WORKER_EVALUATOR_HELDOUT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/corpus/sequence_packer.h"
#include "common/text/bpe_tokenizer.h"

namespace lft {

struct HeldOutOptions {
  int64_t sequence_length = 2048;
  // Stop after this many sequences (the first ones of the stream).
  int64_t max_sequences = 64;
  int32_t eos_id = 0;
  int32_t pad_id = 0;
  // Corrupt lines tolerated per file.
  int64_t error_budget = 0;
};

struct HeldOutSet {
  int64_t sequence_length = 0;
  std::vector<PackedSequence> sequences;  // tokens and mask, each T long
  std::vector<std::string> files;
  int64_t documents = 0;
  int64_t valid_tokens() const;
};

// Reads `files` in order until max_sequences sequences are packed.
// `cancelled` (optional) is polled between documents; when it returns true
// the read stops with Cancelled. Errors: InvalidArgument for no files,
// sequence_length < 2 or max_sequences < 1; NotFound (and the reader's other
// errors) naming the held-out file; FailedPrecondition if the files hold no
// tokens at all.
absl::StatusOr<HeldOutSet> ReadHeldOut(
    const std::vector<std::string>& files, BpeTokenizer* tokenizer,
    const HeldOutOptions& options,
    const std::function<bool()>& cancelled = nullptr);

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_HELDOUT_H_
