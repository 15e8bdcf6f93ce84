// A PairReader that merges readers of the interleaved slices of one order
// (ScanOptions::interleave_index / interleave_count) back into that order:
// pair i comes from reader i % N. RemotePairStore reads one partition over
// N ScanPairs streams on connections of their own this way, so that one
// stream's transport and the server's serialisation of it are not the
// bound of a trainer's read (~2.5 GB/s at the Pythia-410M shape).
//
// The slices must come from one unchanged order: where it ends, every
// reader must end in the same round, and DataLoss is returned otherwise
// (the job's pairs changed while the slices were opened). Errors of a
// reader are returned in the place of the pair it failed to read; the
// merged reader is finished after any error.
#ifndef LFT_LATENT_STORE_INTERLEAVED_PAIR_READER_H_
#define LFT_LATENT_STORE_INTERLEAVED_PAIR_READER_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "latent-store/pair_store.h"

namespace lft {

class InterleavedPairReader : public PairReader {
 public:
  // readers[j] reads slice j of readers.size(); at least one.
  explicit InterleavedPairReader(
      std::vector<std::unique_ptr<PairReader>> readers);

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override;
  void Cancel() override;

 private:
  // After slice `ended` ended: every other slice must be exhausted too.
  absl::Status CheckAllEnded(size_t ended);

  const std::vector<std::unique_ptr<PairReader>> readers_;
  size_t turn_ = 0;
  bool finished_ = false;
  absl::Status status_;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_INTERLEAVED_PAIR_READER_H_
