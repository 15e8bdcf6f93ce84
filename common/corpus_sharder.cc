#include "common/corpus_sharder.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/indexed_dataset.h"
#include "common/jsonl_zst.h"
#include "common/status.h"

namespace lft {

absl::StatusOr<std::vector<std::string>> ListJsonlZstFiles(
    const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("corpus directory ", dir, " does not exist"));
  }
  std::vector<std::string> out;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        absl::EndsWith(it->path().filename().string(), ".jsonl.zst")) {
      out.push_back(it->path().string());
    }
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no *.jsonl.zst file under ", dir));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<CorpusFile>> CorpusSharder::CountDocuments(
    const std::vector<std::string>& paths) {
  std::vector<CorpusFile> files;
  files.reserve(paths.size());
  for (const std::string& path : paths) {
    CorpusFile f;
    f.path = path;
    if (absl::EndsWith(path, ".jsonl.zst")) {
      LFT_ASSIGN_OR_RETURN(f.documents, CountJsonlZstLines(path));
    } else {
      LFT_ASSIGN_OR_RETURN(auto ds, IndexedDataset::Open(path));
      f.documents = ds->num_documents();
    }
    files.push_back(std::move(f));
  }
  return files;
}

absl::StatusOr<std::vector<ShardTask>> CorpusSharder::MakeShards(
    const std::vector<CorpusFile>& files, int64_t documents_per_shard) {
  if (documents_per_shard < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "documents_per_shard = ", documents_per_shard, ", expected >= 1"));
  }
  std::vector<ShardTask> tasks;
  for (const CorpusFile& f : files) {
    if (f.documents < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.path, ": negative document count ", f.documents));
    }
    for (int64_t first = 0; first < f.documents; first += documents_per_shard) {
      ShardTask t;
      t.shard_index = static_cast<int64_t>(tasks.size());
      t.file = f.path;
      t.first_document = first;
      t.end_document = std::min(f.documents, first + documents_per_shard);
      tasks.push_back(std::move(t));
    }
  }
  return tasks;
}

// ------------------------------------------------------------------ ledger

namespace {
std::vector<ShardTask> SortedByIndex(std::vector<ShardTask> tasks) {
  std::sort(tasks.begin(), tasks.end(),
            [](const ShardTask& a, const ShardTask& b) {
              return a.shard_index < b.shard_index;
            });
  return tasks;
}
}  // namespace

ShardLedger::ShardLedger(std::vector<ShardTask> tasks)
    : tasks_(SortedByIndex(std::move(tasks))) {
  absl::MutexLock lock(&mu_);
  entries_.resize(tasks_.size());
  for (size_t i = 0; i < tasks_.size(); ++i) {
    pending_.insert(static_cast<int64_t>(i));
  }
}

int64_t ShardLedger::Find(int64_t shard_index) const {
  auto it = std::lower_bound(
      tasks_.begin(), tasks_.end(), shard_index,
      [](const ShardTask& t, int64_t i) { return t.shard_index < i; });
  if (it == tasks_.end() || it->shard_index != shard_index) return -1;
  return it - tasks_.begin();
}

std::optional<ShardLease> ShardLedger::Acquire(const std::string& worker,
                                               absl::Time now,
                                               absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  if (pending_.empty()) return std::nullopt;
  int64_t pos = *pending_.begin();
  pending_.erase(pending_.begin());
  Entry& e = entries_[pos];
  e.state = ShardState::kLeased;
  e.lease_id = next_lease_id_++;
  e.worker = worker;
  e.expires = now + ttl;
  ++e.attempts;
  ShardLease lease;
  lease.task = tasks_[pos];
  lease.lease_id = e.lease_id;
  lease.worker = worker;
  lease.expires = e.expires;
  lease.attempt = e.attempts;
  return lease;
}

absl::Status ShardLedger::CheckLease(int64_t shard_index,
                                     int64_t lease_id) const {
  int64_t pos = Find(shard_index);
  if (pos < 0) {
    return absl::NotFoundError(absl::StrCat("unknown shard ", shard_index));
  }
  const Entry& e = entries_[pos];
  if (e.state != ShardState::kLeased || e.lease_id != lease_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "shard ", shard_index, ": lease ", lease_id, " is not current (state ",
        e.state == ShardState::kDone     ? "done"
        : e.state == ShardState::kLeased ? "leased"
                                         : "pending",
        e.state == ShardState::kLeased ? absl::StrCat(" as lease ", e.lease_id)
                                       : std::string(),
        ")"));
  }
  return absl::OkStatus();
}

absl::Status ShardLedger::Renew(int64_t shard_index, int64_t lease_id,
                                absl::Time now, absl::Duration ttl) {
  absl::MutexLock lock(&mu_);
  LFT_RETURN_IF_ERROR(CheckLease(shard_index, lease_id));
  entries_[Find(shard_index)].expires = now + ttl;
  return absl::OkStatus();
}

absl::StatusOr<bool> ShardLedger::Complete(int64_t shard_index,
                                           int64_t lease_id) {
  absl::MutexLock lock(&mu_);
  int64_t pos = Find(shard_index);
  if (pos < 0) {
    return absl::NotFoundError(absl::StrCat("unknown shard ", shard_index));
  }
  if (entries_[pos].state == ShardState::kDone) return false;
  LFT_RETURN_IF_ERROR(CheckLease(shard_index, lease_id));
  Entry& e = entries_[pos];
  e.state = ShardState::kDone;
  ++done_;
  documents_done_ += tasks_[pos].documents();
  return true;
}

absl::Status ShardLedger::Fail(int64_t shard_index, int64_t lease_id) {
  absl::MutexLock lock(&mu_);
  LFT_RETURN_IF_ERROR(CheckLease(shard_index, lease_id));
  int64_t pos = Find(shard_index);
  entries_[pos].state = ShardState::kPending;
  pending_.insert(pos);
  return absl::OkStatus();
}

int ShardLedger::ExpireLeases(absl::Time now) {
  absl::MutexLock lock(&mu_);
  int expired = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    if (e.state == ShardState::kLeased && e.expires <= now) {
      e.state = ShardState::kPending;
      pending_.insert(static_cast<int64_t>(i));
      ++expired;
    }
  }
  return expired;
}

absl::Status ShardLedger::MarkDone(int64_t shard_index) {
  absl::MutexLock lock(&mu_);
  int64_t pos = Find(shard_index);
  if (pos < 0) {
    return absl::NotFoundError(absl::StrCat("unknown shard ", shard_index));
  }
  Entry& e = entries_[pos];
  if (e.state == ShardState::kDone) return absl::OkStatus();
  if (e.state == ShardState::kPending) pending_.erase(pos);
  e.state = ShardState::kDone;
  ++done_;
  documents_done_ += tasks_[pos].documents();
  return absl::OkStatus();
}

ShardState ShardLedger::state(int64_t shard_index) const {
  absl::MutexLock lock(&mu_);
  int64_t pos = Find(shard_index);
  return pos < 0 ? ShardState::kPending : entries_[pos].state;
}

int64_t ShardLedger::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pending_.size());
}

int64_t ShardLedger::leased() const {
  absl::MutexLock lock(&mu_);
  return total() - done_ - static_cast<int64_t>(pending_.size());
}

int64_t ShardLedger::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

int64_t ShardLedger::documents_done() const {
  absl::MutexLock lock(&mu_);
  return documents_done_;
}

bool ShardLedger::AllDone() const {
  absl::MutexLock lock(&mu_);
  return done_ == total();
}

std::vector<int64_t> ShardLedger::DoneShards() const {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> out;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].state == ShardState::kDone)
      out.push_back(tasks_[i].shard_index);
  }
  return out;
}

}  // namespace lft
