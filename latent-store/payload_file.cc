#include "latent-store/payload_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace lft {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path, int e) {
  const std::string message =
      absl::StrCat(what, " payload file ", path, ": ", std::strerror(e));
  if (e == ENOSPC || e == EDQUOT) return absl::ResourceExhaustedError(message);
  if (e == ENOENT) return absl::NotFoundError(message);
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<std::shared_ptr<PayloadFile>> PayloadFile::Create(
    const std::string& path, uint64_t id, uint64_t bytes_per_writeback) {
  const int fd =
      ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("creating", path, errno);
  return std::shared_ptr<PayloadFile>(
      new PayloadFile(fd, path, id, bytes_per_writeback));
}

absl::StatusOr<std::shared_ptr<PayloadFile>> PayloadFile::OpenForReading(
    const std::string& path, uint64_t id) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("opening", path, errno);
  return std::shared_ptr<PayloadFile>(
      new PayloadFile(fd, path, id, /*bytes_per_writeback=*/0));
}

PayloadFile::~PayloadFile() { ::close(fd_); }

absl::Status PayloadFile::WriteAt(uint64_t offset, absl::string_view a,
                                  absl::string_view b) {
  iovec parts[2] = {{const_cast<char*>(a.data()), a.size()},
                    {const_cast<char*>(b.data()), b.size()}};
  int first = 0;
  off_t at = static_cast<off_t>(offset);
  while (first < 2) {
    const ssize_t n = ::pwritev(fd_, parts + first, 2 - first, at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("writing", path_, errno);
    }
    at += n;
    size_t left = static_cast<size_t>(n);
    while (first < 2 && left >= parts[first].iov_len) {
      left -= parts[first].iov_len;
      ++first;
    }
    if (first < 2) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
      parts[first].iov_len -= left;
    }
  }
  dirty_.store(true, std::memory_order_release);
  MaybeStartWriteback(a.size() + b.size());
  return absl::OkStatus();
}

void PayloadFile::MaybeStartWriteback(uint64_t written) {
  if (bytes_per_writeback_ == 0) return;
  const uint64_t pending =
      since_writeback_.fetch_add(written, std::memory_order_relaxed) + written;
  if (pending < bytes_per_writeback_) return;
  // One writer of those crossing the threshold together starts it.
  uint64_t expected = pending;
  while (expected >= bytes_per_writeback_ &&
         !since_writeback_.compare_exchange_weak(expected, 0,
                                                 std::memory_order_relaxed)) {
  }
  if (expected < bytes_per_writeback_) return;
#ifdef __linux__
  // The whole file: only pages not yet under writeback are queued, so the
  // call is cheap for ranges another writer already queued. It may block
  // while the device's queue is full, which is the back-pressure a writer
  // faster than the disk should feel.
  if (::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE) != 0) return;
#else
  return;
#endif
  writebacks_started_.fetch_add(1, std::memory_order_relaxed);
}

absl::StatusOr<uint64_t> PayloadFile::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Errno("inspecting", path_, errno);
  return static_cast<uint64_t>(st.st_size);
}

absl::Status PayloadFile::ReadAt(uint64_t offset, size_t n, char* out) const {
  size_t done = 0;
  while (done < n) {
    const ssize_t r =
        ::pread(fd_, out + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errno("reading", path_, errno);
    }
    if (r == 0) {
      return absl::DataLossError(absl::StrCat(
          "payload file ", path_, " ends before offset ", offset + n));
    }
    done += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::Status PayloadFile::SyncIfDirty() {
  if (!dirty_.exchange(false, std::memory_order_acq_rel)) {
    return absl::OkStatus();
  }
  if (::fdatasync(fd_) != 0) {
    const int e = errno;
    dirty_.store(true, std::memory_order_release);
    return Errno("syncing", path_, e);
  }
  return absl::OkStatus();
}

}  // namespace lft
