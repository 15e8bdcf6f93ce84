#include "common/corpus/sequence_packer.h"

#include "absl/strings/str_cat.h"

namespace lft {

absl::StatusOr<SequencePacker> SequencePacker::Create(
    const PackerOptions& options) {
  if (options.sequence_length < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PackerOptions.sequence_length = ", options.sequence_length,
        ", expected >= 1"));
  }
  return SequencePacker(options);
}

void SequencePacker::AddDocument(absl::Span<const int32_t> ids) {
  // Compact the consumed prefix once it dominates the buffer.
  if (start_ > 0 && start_ >= buffer_.size() / 2) {
    buffer_.erase(buffer_.begin(),
                  buffer_.begin() + static_cast<std::ptrdiff_t>(start_));
    start_ = 0;
  }
  buffer_.insert(buffer_.end(), ids.begin(), ids.end());
  buffer_.push_back(options_.eos_id);
}

bool SequencePacker::Next(PackedSequence* out) {
  const size_t len = static_cast<size_t>(options_.sequence_length);
  if (buffer_.size() - start_ < len) return false;
  out->index = next_index_++;
  out->tokens.assign(
      buffer_.begin() + static_cast<std::ptrdiff_t>(start_),
      buffer_.begin() + static_cast<std::ptrdiff_t>(start_ + len));
  out->mask.assign(len, 1);
  out->real_tokens = options_.sequence_length;
  start_ += len;
  return true;
}

bool SequencePacker::Finish(PackedSequence* out) {
  const size_t remaining = buffer_.size() - start_;
  if (remaining == 0) return false;
  if (!options_.pad_last ||
      remaining >= static_cast<size_t>(options_.sequence_length)) {
    // Full sequences belong to Next(); only a partial remainder is dropped.
    if (remaining < static_cast<size_t>(options_.sequence_length)) {
      tokens_dropped_ += static_cast<int64_t>(remaining);
      buffer_.clear();
      start_ = 0;
    }
    return false;
  }
  const size_t len = static_cast<size_t>(options_.sequence_length);
  out->index = next_index_++;
  out->tokens.assign(buffer_.begin() + static_cast<std::ptrdiff_t>(start_),
                     buffer_.end());
  out->tokens.resize(len, options_.pad_id);
  out->mask.assign(len, 0);
  std::fill(out->mask.begin(),
            out->mask.begin() + static_cast<std::ptrdiff_t>(remaining), 1);
  out->real_tokens = static_cast<int64_t>(remaining);
  buffer_.clear();
  start_ = 0;
  return true;
}

}  // namespace lft
