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

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace rocksdb {
class DB;
}

namespace lft {

// Thread-safe (RocksDB is).
class StateStore {
 public:
  // Opens (creating if missing) the database in directory `path`.
  // Unavailable if another process holds it (RocksDB's LOCK file), Internal
  // with RocksDB's message on other failures.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(
      const std::string& path);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // A put (value set) or a delete (value unset).
  struct Mutation {
    std::string key;
    std::optional<std::string> value;
  };
  // Applies all mutations atomically (one WriteBatch). Internal on failure,
  // in which case none is applied.
  absl::Status Write(const std::vector<Mutation>& mutations);

  // Calls `fn(key, value)` for every key starting with `prefix`, in key
  // order. Internal if the scan fails part-way.
  absl::Status Scan(absl::string_view prefix,
                    const std::function<void(absl::string_view key,
                                             absl::string_view value)>& fn);

  // NotFound if `key` is absent.
  absl::StatusOr<std::string> Get(absl::string_view key);

 private:
  explicit StateStore(rocksdb::DB* db) : db_(db) {}
  rocksdb::DB* const db_;
};

}  // namespace lft

#endif  // LFT_COORDINATOR_STATE_STORE_H_
