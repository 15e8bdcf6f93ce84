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
  // Every `bytes_per_writeback` bytes written (0: never) the kernel is asked
  // to start writing the file's dirty pages back (sync_file_range, Linux):
  // without it a task's gigabytes sit in the page cache until SyncIfDirty,
  // which then writes them all while the teacher waits, so the disk and
  // the GPU take turns instead of overlapping.
  static absl::StatusOr<std::shared_ptr<PayloadFile>> Create(
      const std::string& path, uint64_t id, uint64_t bytes_per_writeback = 0);
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
  bool dirty() const { return dirty_.load(std::memory_order_acquire); }
  // How many early writebacks WriteAt has started (for tests and metrics).
  uint64_t writebacks_started() const {
    return writebacks_started_.load(std::memory_order_relaxed);
  }

 private:
  PayloadFile(int fd, std::string path, uint64_t id,
              uint64_t bytes_per_writeback)
      : fd_(fd),
        path_(std::move(path)),
        id_(id),
        bytes_per_writeback_(bytes_per_writeback) {}

  // Starts writeback once `written` more bytes bring the count past
  // bytes_per_writeback_. Best effort: SyncIfDirty reports real errors.
  void MaybeStartWriteback(uint64_t written);

  const int fd_;
  const std::string path_;
  const uint64_t id_;
  const uint64_t bytes_per_writeback_;
  std::atomic<bool> dirty_{false};
  std::atomic<uint64_t> since_writeback_{0};
  std::atomic<uint64_t> writebacks_started_{0};
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_PAYLOAD_FILE_H_
