// RetryingPairStore: a PairStore that rides out a store that is down or
// restarting. Every call that fails with Unavailable (the store cannot be
// reached: killed, restarting, its network cut) is tried again after a
// bounded exponential backoff with jitter (common/base/backoff.h) until it
// succeeds, the caller is cancelled, or the store has stayed unreachable for
// `give_up_after`; only then does the call fail, with an Unavailable error
// naming the store, how long it was waited for and its last error. Other
// errors pass through at once: they are the store's answer.
//
// Workers wrap the pool's store in one of these per task, so that a
// restarted lft-store costs a task a wait, not one of its attempts
// (docs/operations.md, "Failure handling").
//
// Retried calls and what a retry means:
//   CreateJob, Stats, WriteSession, SealShard, PutCheckpoint,
//   GetCheckpoint, ListCheckpoints, DeleteCheckpoint, KeepLastCheckpoints,
//   DeleteJob:
//     idempotent, retried as they are.
//   PutPairs: idempotent (a pair's key is its address); retried until
//     `deadline` as well. Pairs acknowledged before a restart may be lost
//     with it; SyncPairs says so (Aborted) and is NOT retried: the writer
//     must write them again.
//   AckConsumed: retried; if the store applied the call but its answer was
//     lost, the pairs count twice as consumed (consumed never exceeds
//     written, so at worst back-pressure releases a batch early).
//   Scan: the reader reopens its scan after a broken stream and skips the
//     pairs it already delivered (ScanOptions::skip_pairs). Exact when the
//     pairs it reads do not change meanwhile: cached mode, evaluation, and
//     streaming trainers, which read ranges of the final prefix.
//
// Thread-safe if the base store is; readers follow PairReader's rules.
#ifndef LFT_LATENT_STORE_RETRYING_PAIR_STORE_H_
#define LFT_LATENT_STORE_RETRYING_PAIR_STORE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/backoff.h"
#include "latent-store/pair_store.h"

namespace lft {

struct StoreRetryOptions {
  BackoffPolicy backoff;
  // How long the store may stay unreachable before a call fails.
  absl::Duration give_up_after = absl::Minutes(5);
  // Sleeps between tries; returns true when the caller must stop (its task
  // was cancelled): the call then returns Cancelled. Empty: absl::SleepFor.
  std::function<bool(absl::Duration)> sleep;
  // Names the store in messages and logs, e.g. "latent store 10.0.0.5:7071".
  std::string description = "latent store";
};

class RetryingPairStore : public PairStore {
 public:
  // `base` must outlive this object.
  RetryingPairStore(PairStore* base, StoreRetryOptions options);

  absl::Status CreateJob(absl::string_view job,
                         const JobConfig& config) override;
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override;
  absl::StatusOr<std::string> WriteSession() override;
  // Not retried on Aborted (the store restarted; see above).
  absl::Status SyncPairs(absl::string_view job,
                         absl::string_view session) override;
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override;
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
  // A read cut by an outage resumes after the bytes the sink already took.
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

  // Runs `op` until it returns anything but Unavailable, the caller is
  // cancelled (Cancelled), `deadline` or give_up_after passes (Unavailable
  // naming the store, the time waited and the last error). `what` names the
  // call in logs.
  absl::Status Retry(const char* what, absl::Time deadline,
                     const std::function<absl::Status()>& op);

 private:
  PairStore* const base_;
  const StoreRetryOptions options_;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_RETRYING_PAIR_STORE_H_
