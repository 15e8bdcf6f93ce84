// Packs tokenized documents into fixed-length training sequences.
//
// Documents are concatenated, each followed by one EOS token (as GPT-NeoX /
// Pythia pack the Pile), and the stream is cut into sequences of exactly
// sequence_length tokens; a document may span sequences. The final partial
// sequence is either padded (mask 0 on padding) or dropped.
#ifndef LFT_COMMON_CORPUS_SEQUENCE_PACKER_H_
#define LFT_COMMON_CORPUS_SEQUENCE_PACKER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace lft {

struct PackerOptions {
  int64_t sequence_length = 2048;
  int32_t eos_id = 0;
  int32_t pad_id = 1;
  // true: Finish() returns the last partial sequence padded with pad_id;
  // false: it is dropped (and counted in tokens_dropped()).
  bool pad_last = false;
};

struct PackedSequence {
  int64_t index = 0;            // 0-based position in the output stream
  std::vector<int32_t> tokens;  // exactly sequence_length
  std::vector<uint8_t> mask;    // 1 real token, 0 padding
  int64_t real_tokens = 0;      // number of 1s in mask
};

class SequencePacker {
 public:
  // InvalidArgument when sequence_length < 1.
  static absl::StatusOr<SequencePacker> Create(const PackerOptions& options);

  // Appends one document's tokens and an EOS.
  void AddDocument(absl::Span<const int32_t> ids);
  // Pops the next full sequence. false when fewer than sequence_length
  // tokens are buffered.
  bool Next(PackedSequence* out);
  // After the last AddDocument and draining Next(): returns the final
  // partial sequence (padded) when pad_last and any tokens remain; otherwise
  // false (the remainder, if any, is dropped).
  bool Finish(PackedSequence* out);

  int64_t buffered_tokens() const {
    return static_cast<int64_t>(buffer_.size() - start_);
  }
  int64_t sequences_emitted() const { return next_index_; }
  int64_t tokens_dropped() const { return tokens_dropped_; }

 private:
  explicit SequencePacker(const PackerOptions& options) : options_(options) {}
  PackerOptions options_;
  std::vector<int32_t> buffer_;
  size_t start_ = 0;  // consumed prefix of buffer_
  int64_t next_index_ = 0;
  int64_t tokens_dropped_ = 0;
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_SEQUENCE_PACKER_H_
