#include "coordinator/state_store.h"

#include <sys/statvfs.h>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace lft {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::UnavailableError(
        absl::StrCat(what, ": ", s.ToString(),
                     " (is another lft-coordinator using this --db?)"));
  }
  return absl::InternalError(absl::StrCat(what, ": ", s.ToString()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(
    const std::string& path, uint64_t min_free_disk_bytes) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.max_open_files = 256;
  // Write() resumes after a full disk itself (see there).
  options.max_bgerror_resume_count = 0;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, path, &db);
  if (!s.ok())
    return FromRocks(s, absl::StrCat("opening coordinator state ", path));
  return std::unique_ptr<StateStore>(
      new StateStore(db, path, min_free_disk_bytes));
}

absl::Status StateStore::CheckFreeSpace(uint64_t bytes) const {
  struct statvfs fs;
  if (statvfs(path_.c_str(), &fs) != 0) return absl::OkStatus();
  const uint64_t free_bytes =
      static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_frsize);
  if (free_bytes >= bytes + min_free_disk_bytes_) return absl::OkStatus();
  // Refused before RocksDB sees it: a WAL append that fails for lack of
  // space can abort the process inside RocksDB 7.8 (an assertion in its
  // WritableFileWriter when the failed log is used again).
  return absl::ResourceExhaustedError(absl::StrCat(
      "writing coordinator state: the disk of --db ", path_, " is full (",
      free_bytes, " bytes free, ", min_free_disk_bytes_,
      " kept in reserve, --min-free-disk-mib); free space there: writes "
      "resume by themselves"));
}

StateStore::~StateStore() { delete db_; }

void StateStore::SetWriteHookForTesting(WriteHook hook) {
  absl::MutexLock lock(&hook_mu_);
  write_hook_ = std::move(hook);
}

absl::Status StateStore::Write(const std::vector<Mutation>& mutations) {
  {
    absl::MutexLock lock(&hook_mu_);
    if (write_hook_) LFT_RETURN_IF_ERROR(write_hook_(mutations));
  }
  rocksdb::WriteBatch batch;
  uint64_t put_bytes = 0;
  for (const Mutation& m : mutations) {
    if (m.value.has_value()) {
      batch.Put(m.key, *m.value);
      put_bytes += m.key.size() + m.value->size();
    } else {
      batch.Delete(m.key);
    }
  }
  if (put_bytes > 0) LFT_RETURN_IF_ERROR(CheckFreeSpace(put_bytes));
  // Called with write_mu_ held.
  auto no_space =
      [&](const rocksdb::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
        out_of_space_ = true;
        return absl::ResourceExhaustedError(
            absl::StrCat("writing coordinator state: the disk of --db ",
                         db_->GetName(), " is full (", s.ToString(),
                         "); free space there: writes resume by themselves"));
      };
  auto is_no_space = [](const rocksdb::Status& s) {
    return s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace;
  };
  absl::MutexLock lock(&write_mu_);
  if (out_of_space_) {
    // RocksDB stops writes after a failed WAL append; Resume() opens a new
    // WAL once space returned (latent-store/latent_store.cc does the same).
    rocksdb::Status r = db_->Resume();
    if (is_no_space(r)) return no_space(r);
    // Busy: RocksDB's own recovery is under way; the write below tells.
    if (!r.ok() && !r.IsBusy())
      return FromRocks(r, "resuming coordinator state after a full disk");
  }
  rocksdb::Status s = db_->Write(rocksdb::WriteOptions(), &batch);
  if (s.ok()) out_of_space_ = false;
  if (is_no_space(s)) return no_space(s);
  return FromRocks(s, "writing coordinator state");
}

absl::Status StateStore::Scan(
    absl::string_view prefix,
    const std::function<void(absl::string_view, absl::string_view)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(rocksdb::Slice(prefix.data(), prefix.size())); it->Valid();
       it->Next()) {
    absl::string_view key(it->key().data(), it->key().size());
    if (key.substr(0, prefix.size()) != prefix) break;
    fn(key, absl::string_view(it->value().data(), it->value().size()));
  }
  return FromRocks(it->status(), absl::StrCat("scanning ", prefix));
}

absl::StatusOr<std::string> StateStore::Get(absl::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(),
                               rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound())
    return absl::NotFoundError(absl::StrCat(key, " not found"));
  if (!s.ok()) return FromRocks(s, absl::StrCat("reading ", key));
  return value;
}

}  // namespace lft
