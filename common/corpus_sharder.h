// Deterministic sharding of a corpus into tasks a coordinator hands out, and
// the ledger that accounts for each task exactly once.
//
// A ShardTask is a document range [first_document, end_document) of one
// file, where a document is a line of a *.jsonl.zst file (see
// common/jsonl_zst.h: its 0-based line index) or a document of a Megatron
// dataset (file = the path prefix without .bin/.idx). The same files and
// documents_per_shard always give the same tasks, so a restarted coordinator
// re-derives identical shard indices.
#ifndef LFT_COMMON_CORPUS_SHARDER_H_
#define LFT_COMMON_CORPUS_SHARDER_H_

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace lft {

struct ShardTask {
  int64_t shard_index = 0;
  std::string file;
  int64_t first_document = 0;
  int64_t end_document = 0;  // exclusive
  int64_t documents() const { return end_document - first_document; }
  bool operator==(const ShardTask& o) const {
    return shard_index == o.shard_index && file == o.file &&
           first_document == o.first_document && end_document == o.end_document;
  }
};

struct CorpusFile {
  std::string path;
  int64_t documents = 0;
};

// The *.jsonl.zst files under `dir` (recursively), sorted by path. NotFound
// when `dir` does not exist; InvalidArgument when it holds no such file.
absl::StatusOr<std::vector<std::string>> ListJsonlZstFiles(
    const std::string& dir);

class CorpusSharder {
 public:
  // The counting pass: documents per file. A path ending in .jsonl.zst is
  // decompressed and its lines counted; any other path is taken as a
  // Megatron prefix (path.idx / path.bin). Errors name the file (DataLoss
  // for corrupt data, NotFound for a missing file).
  static absl::StatusOr<std::vector<CorpusFile>> CountDocuments(
      const std::vector<std::string>& paths);

  // Splits each file into consecutive ranges of documents_per_shard
  // documents (the last range of a file may be shorter; shards never span
  // files; empty files yield no shard), numbering shards 0, 1, ... in the
  // given file order. InvalidArgument when documents_per_shard < 1 or a
  // count is negative.
  static absl::StatusOr<std::vector<ShardTask>> MakeShards(
      const std::vector<CorpusFile>& files, int64_t documents_per_shard);
};

enum class ShardState { kPending, kLeased, kDone };

struct ShardLease {
  ShardTask task;
  int64_t lease_id = 0;  // unique per hand-out; completions must quote it
  std::string worker;
  absl::Time expires;
  int attempt = 0;  // 1 for the first hand-out of the shard
};

// Tracks every shard as pending, leased or done. Thread-safe; torch-free so
// the coordinator can embed it. Exactly-once accounting: a shard is counted
// done once, by the holder of its current lease; a lost worker's shard goes
// back to pending (Fail / ExpireLeases) and is handed out again with a new
// lease id, and the old lease can no longer complete it.
class ShardLedger {
 public:
  // `tasks` must have distinct shard_index values (as MakeShards gives).
  explicit ShardLedger(std::vector<ShardTask> tasks);

  // Leases the lowest-index pending shard to `worker` until now + ttl.
  // nullopt when nothing is pending.
  std::optional<ShardLease> Acquire(const std::string& worker, absl::Time now,
                                    absl::Duration ttl);

  // Extends a current lease. NotFound for an unknown shard;
  // FailedPrecondition when lease_id is not the shard's current lease.
  absl::Status Renew(int64_t shard_index, int64_t lease_id, absl::Time now,
                     absl::Duration ttl);

  // Marks the shard done. Returns true when this call counted it, false when
  // it was already done (an idempotent retry, or a late duplicate). NotFound
  // for an unknown shard; FailedPrecondition when the shard is not done and
  // lease_id is not its current lease (the lease expired or was failed and
  // the shard was, or will be, handed out again).
  absl::StatusOr<bool> Complete(int64_t shard_index, int64_t lease_id);

  // Returns a leased shard to pending (the worker reported failure).
  // Same errors as Renew; a done shard is FailedPrecondition.
  absl::Status Fail(int64_t shard_index, int64_t lease_id);

  // Returns every lease that expired at or before `now` to pending; the
  // number returned.
  int ExpireLeases(absl::Time now);

  // For coordinator recovery: marks a shard done without a lease (e.g. from
  // a persisted record). Idempotent; NotFound for an unknown shard.
  absl::Status MarkDone(int64_t shard_index);

  ShardState state(int64_t shard_index) const;
  int64_t total() const { return static_cast<int64_t>(tasks_.size()); }
  int64_t pending() const;
  int64_t leased() const;
  int64_t done() const;
  int64_t documents_done() const;
  bool AllDone() const;
  std::vector<int64_t> DoneShards() const;

 private:
  struct Entry {
    ShardState state = ShardState::kPending;
    int64_t lease_id = 0;
    std::string worker;
    absl::Time expires;
    int attempts = 0;
  };
  absl::Status CheckLease(int64_t shard_index, int64_t lease_id) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  // Position in tasks_ of a shard index; -1 when unknown.
  int64_t Find(int64_t shard_index) const;

  const std::vector<ShardTask> tasks_;  // sorted by shard_index
  mutable absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::set<int64_t> pending_ ABSL_GUARDED_BY(mu_);  // positions
  int64_t next_lease_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t documents_done_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_SHARDER_H_
