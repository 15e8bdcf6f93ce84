// ShardedPairStore: one PairStore over several lft-store processes (on one
// node: one per disk or per directory), so that a teacher's output is
// written by several stores' flush threads and disks at once. A task's
// store address "host:a,host:b" names them (PairStorePool builds this).
//
// Placement: a pair lives on store SplitMix64(shard, sequence) % N, so
// every batch of a teacher is split about evenly and a re-run shard
// overwrites on the same store. The job itself (config, counters) exists
// on every store; checkpoints and reports live on store 0.
//
// Reads: Scan opens the same partition on every store and interleaves them
// round-robin, so the W partitions stay disjoint and complete, the order
// depends on N (fixed for a job) but not on W, and skip_pairs skips pairs
// of that interleaved order. start_block is refused (InvalidArgument): a
// block offset means nothing across stores; so are a range and an
// interleaved slice (interleave_count > 1). AckConsumed is spread over the
// stores in proportion to what this process's readers read from each.
//
// Durability: WriteSession joins the stores' sessions; SyncPairs syncs
// every store and fails with the first store's error (Aborted when any of
// them restarted). Thread-safe.
#ifndef LFT_LATENT_STORE_SHARDED_PAIR_STORE_H_
#define LFT_LATENT_STORE_SHARDED_PAIR_STORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "latent-store/pair_store.h"

namespace lft {

class ShardedPairStore : public PairStore {
 public:
  // `stores` (at least one) are owned.
  explicit ShardedPairStore(std::vector<std::unique_ptr<PairStore>> stores);
  ~ShardedPairStore() override;

  // Which of `count` stores holds pair (shard, sequence).
  static size_t StoreOf(uint32_t shard, uint64_t sequence, size_t count);

  absl::Status CreateJob(absl::string_view job,
                         const JobConfig& config) override;
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override;
  absl::StatusOr<std::string> WriteSession() override;
  absl::Status SyncPairs(absl::string_view job,
                         absl::string_view session) override;
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override;
  // Unimplemented: streaming mode needs one store (see SealShard in
  // pair_store.h); ranges in Scan are refused for the same reason.
  absl::Status SealShard(absl::string_view job, uint32_t shard,
                         uint64_t pairs) override;
  absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) override;
  absl::StatusOr<JobStats> Stats(absl::string_view job) override;
  absl::StatusOr<CheckpointInfo> PutCheckpoint(
      absl::string_view job, absl::string_view name, absl::string_view data,
      absl::string_view expected_sha256) override;
  absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                            absl::string_view name) override;
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(
      absl::string_view job, absl::string_view name, uint64_t offset,
      const CheckpointSink& sink) override;
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) override;
  absl::Status DeleteCheckpoint(absl::string_view job,
                                absl::string_view name) override;
  absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                               uint64_t keep) override;
  absl::Status DeleteJob(absl::string_view job) override;
  absl::Status DeletePairs(absl::string_view job) override;

 private:
  friend class ShardedPairReader;
  // Pairs readers of `job` took from store `i` (read) and acknowledged.
  struct Consumption {
    std::vector<uint64_t> read, acked;
  };
  void CountRead(const std::string& job, size_t store);

  const std::vector<std::unique_ptr<PairStore>> stores_;

  // State below is protected by mu_.
  absl::Mutex mu_;
  std::map<std::string, Consumption, std::less<>> consumption_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_SHARDED_PAIR_STORE_H_
