#include "latent-store/interleaved_pair_reader.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace lft {

InterleavedPairReader::InterleavedPairReader(
    std::vector<std::unique_ptr<PairReader>> readers)
    : readers_(std::move(readers)) {}

absl::StatusOr<bool> InterleavedPairReader::Next(LatentPairRecord* pair) {
  if (finished_) {
    if (!status_.ok()) return status_;
    return false;
  }
  if (readers_.empty()) {
    finished_ = true;
    return false;
  }
  const size_t i = turn_;
  absl::StatusOr<bool> more = readers_[i]->Next(pair);
  if (more.ok() && *more) {
    turn_ = (turn_ + 1) % readers_.size();
    return true;
  }
  finished_ = true;
  status_ = more.ok() ? CheckAllEnded(i) : more.status();
  if (!status_.ok()) return status_;
  return false;
}

void InterleavedPairReader::Cancel() {
  for (const auto& r : readers_) r->Cancel();
}

absl::Status InterleavedPairReader::CheckAllEnded(size_t ended) {
  for (size_t j = 0; j < readers_.size(); ++j) {
    if (j == ended) continue;
    LatentPairRecord extra;
    absl::StatusOr<bool> more = readers_[j]->Next(&extra);
    if (!more.ok()) return more.status();
    if (*more) {
      return absl::DataLossError(absl::StrCat(
          "slice ", ended, " of ", readers_.size(),
          " of a parallel scan ended while slice ", j,
          " still had pairs: the job's pairs changed while the scan's "
          "streams were opened; scan again"));
    }
  }
  return absl::OkStatus();
}

}  // namespace lft
