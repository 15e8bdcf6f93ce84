#include "latent-store/prefetching_pair_reader.h"

#include <algorithm>
#include <utility>

namespace lft {

PrefetchingPairReader::PrefetchingPairReader(std::unique_ptr<PairReader> inner,
                                             size_t depth)
    : inner_(std::move(inner)), depth_(std::max<size_t>(1, depth)) {
  thread_ = std::thread([this] { Produce(); });
}

PrefetchingPairReader::~PrefetchingPairReader() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  // A Next in flight on a stream whose server stopped sending would
  // otherwise keep the join waiting for good.
  inner_->Cancel();
  thread_.join();
}

bool PrefetchingPairReader::HasRoom() const {
  return stop_ || ready_.size() < depth_;
}

bool PrefetchingPairReader::HasPairOrEnd() const {
  return !ready_.empty() || ended_;
}

void PrefetchingPairReader::Produce() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &PrefetchingPairReader::HasRoom));
      if (stop_) return;
    }
    // Outside the lock: the consumer takes ready pairs meanwhile.
    LatentPairRecord pair;
    absl::StatusOr<bool> more = inner_->Next(&pair);
    absl::MutexLock lock(&mu_);
    if (!more.ok() || !*more) {
      ended_ = true;
      status_ = more.status();
      return;
    }
    ready_.push_back(std::move(pair));
  }
}

absl::StatusOr<bool> PrefetchingPairReader::Next(LatentPairRecord* pair) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(this, &PrefetchingPairReader::HasPairOrEnd));
  if (!ready_.empty()) {
    *pair = std::move(ready_.front());
    ready_.pop_front();
    return true;
  }
  if (!status_.ok()) return status_;
  return false;
}

}  // namespace lft
