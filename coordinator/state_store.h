// The coordinator's durable state: one RocksDB database of its own with
// key prefixes (docs/api.md, "State layout"):
//
//   jobs/<job_id>                 -> lft.v1.JobRecord
//   tasks/<task_id>               -> lft.v1.TaskRecord
//   workers/<worker_id>           -> lft.v1.WorkerRecord
//   events/<job_id>/<seq, 12 dec> -> lft.v1.JobEvent
//   meta/<name>                   -> counters and idempotency keys
//
// Values are serialized protos. Writes go through the WAL (not fsynced), so
// they survive a crash of the process; see docs/operations.md.
#ifndef LFT_COORDINATOR_STATE_STORE_H_
#define LFT_COORDINATOR_STATE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace rocksdb {
class DB;
}

namespace lft {

// Thread-safe (RocksDB is; the test hook is behind its own mutex).
class StateStore {
 public:
  // Covers the memtables RocksDB may still have to flush and a compaction
  // of the (small) state.
  static constexpr uint64_t kDefaultMinFreeDiskBytes = 256ull << 20;

  // Opens (creating if missing) the database in directory `path`. Writes
  // are refused while less than `min_free_disk_bytes` would stay free on
  // its file system (see Write). Unavailable if another process holds it
  // (RocksDB's LOCK file), Internal with RocksDB's message on other
  // failures.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(
      const std::string& path,
      uint64_t min_free_disk_bytes = kDefaultMinFreeDiskBytes);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // A put (value set) or a delete (value unset).
  struct Mutation {
    std::string key;
    std::optional<std::string> value;
  };
  // Applies all mutations atomically (one WriteBatch). On failure none is
  // applied: ResourceExhausted naming the directory when its disk is full,
  // which is checked before RocksDB sees the batch (fewer than
  // min_free_disk_bytes would stay free; batches of deletions only are
  // admitted), or reported by RocksDB (it then refuses writes; the next
  // Write resumes the database first); either way writes succeed again once
  // space returns, and reads are served meanwhile. Internal on other
  // failures.
  absl::Status Write(const std::vector<Mutation>& mutations);

  // Fault injection for tests: while a hook is set, Write calls it first
  // and, if it returns an error, returns that error and writes nothing. An
  // empty hook removes it. The hook must not call back into the store.
  using WriteHook =
      std::function<absl::Status(const std::vector<Mutation>& mutations)>;
  void SetWriteHookForTesting(WriteHook hook);

  // Calls `fn(key, value)` for every key starting with `prefix`, in key
  // order. Internal if the scan fails part-way.
  absl::Status Scan(absl::string_view prefix,
                    const std::function<void(absl::string_view key,
                                             absl::string_view value)>& fn);

  // NotFound if `key` is absent.
  absl::StatusOr<std::string> Get(absl::string_view key);

 private:
  StateStore(rocksdb::DB* db, std::string path, uint64_t min_free_disk_bytes)
      : db_(db),
        path_(std::move(path)),
        min_free_disk_bytes_(min_free_disk_bytes) {}
  // ResourceExhausted naming the directory when `bytes` more would leave
  // less than min_free_disk_bytes_ free.
  absl::Status CheckFreeSpace(uint64_t bytes) const;

  rocksdb::DB* const db_;
  const std::string path_;
  const uint64_t min_free_disk_bytes_;

  absl::Mutex hook_mu_;
  WriteHook write_hook_ ABSL_GUARDED_BY(hook_mu_);
  // Serializes writes with DB::Resume() after a full disk.
  absl::Mutex write_mu_;
  bool out_of_space_ ABSL_GUARDED_BY(write_mu_) = false;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_STATE_STORE_H_
