// One append-only file of pair payloads (x0 then x1 of each pair, back to
// back), the place LatentStore writes a pair's bytes exactly once; RocksDB
// keeps only the record header and a reference (file id, offset). Writers
// reserve disjoint ranges first (LatentStore does, under its lock) and then
// write them in parallel with pwrite; SyncIfDirty makes everything written
// so far durable. A file stays readable through this object after its path
// is unlinked (a scan that outlives DeletePairs keeps its snapshot's
// bytes). Thread-safe.
#ifndef LFT_LATENT_STORE_PAYLOAD_FILE_H_
#define LFT_LATENT_STORE_PAYLOAD_FILE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lft {

class PayloadFile {
 public:
  // A new, empty file at `path` (exclusive create). Errors name the path.
  static absl::StatusOr<std::shared_ptr<PayloadFile>> Create(
      const std::string& path, uint64_t id);
  // An existing file, for reading (a store reopened after a restart never
  // appends to one: its tail may be torn).
  static absl::StatusOr<std::shared_ptr<PayloadFile>> OpenForReading(
      const std::string& path, uint64_t id);
  ~PayloadFile();
  PayloadFile(const PayloadFile&) = delete;
  PayloadFile& operator=(const PayloadFile&) = delete;

  uint64_t id() const { return id_; }
  const std::string& path() const { return path_; }

  // Writes a then b at `offset`. ResourceExhausted for a full disk,
  // Internal for other write errors; both name the path.
  absl::Status WriteAt(uint64_t offset, absl::string_view a,
                       absl::string_view b);
  // The file's size now (written ranges included).
  absl::StatusOr<uint64_t> Size() const;
  // Reads exactly `n` bytes at `offset`: DataLoss if the file ends first.
  absl::Status ReadAt(uint64_t offset, size_t n, char* out) const;
  // fdatasync if anything was written since the last successful sync.
  absl::Status SyncIfDirty();

 private:
  PayloadFile(int fd, std::string path, uint64_t id)
      : fd_(fd), path_(std::move(path)), id_(id) {}

  const int fd_;
  const std::string path_;
  const uint64_t id_;
  std::atomic<bool> dirty_{false};
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_PAYLOAD_FILE_H_
