// A PairReader that reads another one on a thread of its own, up to `depth`
// pairs ahead of its consumer, so that the consumer's thread never waits on
// the store while there is work elsewhere: a trainer's read of the next
// step (for a remote store, the gRPC read and parse of ~64 MiB per step at
// the Pythia-410M shape) then runs beside the step instead of inside it.
//
// Same pairs, same order, same errors as the wrapped reader: an error is
// returned after the pairs read before it, and the reader is finished
// after it. Destruction stops the thread: it cancels the wrapped reader
// (PairReader::Cancel, which ends a remote stream's Read in flight) and
// waits for its Next call in flight, if any. Wrap only readers whose Next
// returns promptly once cancelled.
#ifndef LFT_LATENT_STORE_PREFETCHING_PAIR_READER_H_
#define LFT_LATENT_STORE_PREFETCHING_PAIR_READER_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "latent-store/pair_store.h"

namespace lft {

class PrefetchingPairReader : public PairReader {
 public:
  // depth >= 1 pairs are held ready (depth 0 is taken as 1).
  PrefetchingPairReader(std::unique_ptr<PairReader> inner, size_t depth);
  ~PrefetchingPairReader() override;

  PrefetchingPairReader(const PrefetchingPairReader&) = delete;
  PrefetchingPairReader& operator=(const PrefetchingPairReader&) = delete;

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override;
  // Cancels the wrapped reader: its Next in flight fails, and that error
  // reaches this reader's consumer after the pairs read before it.
  void Cancel() override { inner_->Cancel(); }

 private:
  void Produce();
  bool HasRoom() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasPairOrEnd() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Only the thread calls its Next; the destructor may call its Cancel.
  const std::unique_ptr<PairReader> inner_;
  const size_t depth_;
  absl::Mutex mu_;
  std::deque<LatentPairRecord> ready_ ABSL_GUARDED_BY(mu_);
  // The wrapped reader ended (false or an error, kept in status_).
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_PREFETCHING_PAIR_READER_H_
