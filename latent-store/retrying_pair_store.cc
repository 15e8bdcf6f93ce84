#include "latent-store/retrying_pair_store.h"

#include <algorithm>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/base/log.h"

namespace lft {
namespace {

// A reader that reopens its scan after the store went away, skipping the
// pairs it already delivered.
class RetryingPairReader : public PairReader {
 public:
  RetryingPairReader(RetryingPairStore* owner, PairStore* base, std::string job,
                     ScanOptions options, std::unique_ptr<PairReader> reader)
      : owner_(owner),
        base_(base),
        job_(std::move(job)),
        options_(options),
        reader_(std::move(reader)) {}

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    bool more = false;
    absl::Status s = owner_->Retry(
        "ScanPairs", absl::InfiniteFuture(), [&]() -> absl::Status {
          if (reader_ == nullptr) {
            ScanOptions reopened = options_;
            reopened.skip_pairs += delivered_;
            auto r = base_->Scan(job_, reopened);
            if (!r.ok()) return r.status();
            absl::MutexLock lock(&mu_);
            if (cancelled_) return absl::CancelledError("scan cancelled");
            reader_ = std::move(*r);
          }
          absl::StatusOr<bool> next = reader_->Next(pair);
          if (!next.ok()) {
            absl::MutexLock lock(&mu_);
            reader_.reset();  // finished after any error
            if (cancelled_) return absl::CancelledError("scan cancelled");
            return next.status();
          }
          more = *next;
          return absl::OkStatus();
        });
    if (!s.ok()) return s;
    if (more) ++delivered_;
    return more;
  }

  // reader_ is replaced and reset under mu_, so Cancel never meets a
  // reader being destroyed; a cancelled scan does not reopen.
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (reader_ != nullptr) reader_->Cancel();
  }

 private:
  RetryingPairStore* const owner_;
  PairStore* const base_;
  const std::string job_;
  const ScanOptions options_;
  absl::Mutex mu_;
  // Written by Next under mu_; read there without it (only Next writes).
  std::unique_ptr<PairReader> reader_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t delivered_ = 0;
};

}  // namespace

RetryingPairStore::RetryingPairStore(PairStore* base, StoreRetryOptions options)
    : base_(base), options_(std::move(options)) {}

absl::Status RetryingPairStore::Retry(const char* what, absl::Time deadline,
                                      const std::function<absl::Status()>& op) {
  const absl::Time start = absl::Now();
  const absl::Time give_up = std::min(deadline, start + options_.give_up_after);
  Backoff backoff(options_.backoff);
  while (true) {
    absl::Status s = op();
    if (!absl::IsUnavailable(s)) {
      if (backoff.tries() > 0) {
        LogInfo(
            "latent store reachable again",
            {{"store", options_.description},
             {"call", what},
             {"waited_ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
      }
      return s;
    }
    const absl::Time now = absl::Now();
    const absl::Duration wait = std::min(backoff.Next(), give_up - now);
    if (wait <= absl::ZeroDuration()) {
      return absl::UnavailableError(absl::StrCat(
          options_.description, " unreachable for ",
          absl::FormatDuration(absl::Trunc(now - start, absl::Seconds(1))),
          " (", backoff.tries(), " tries of ", what,
          "); last error: ", s.message()));
    }
    LogWarning("latent store unavailable; waiting to retry",
               {{"store", options_.description},
                {"call", what},
                {"try", backoff.tries()},
                {"wait_ms", absl::ToInt64Milliseconds(wait)},
                {"error", s.message()}});
    const bool cancelled =
        options_.sleep ? options_.sleep(wait) : (absl::SleepFor(wait), false);
    if (cancelled) {
      return absl::CancelledError(absl::StrCat("cancelled while waiting for ",
                                               options_.description, " (", what,
                                               "): ", s.message()));
    }
  }
}

absl::Status RetryingPairStore::CreateJob(absl::string_view job,
                                          const JobConfig& config) {
  return Retry("CreateJob", absl::InfiniteFuture(),
               [&] { return base_->CreateJob(job, config); });
}

absl::Status RetryingPairStore::PutPairs(
    absl::string_view job, absl::Span<const LatentPairRecord> pairs,
    absl::Time deadline) {
  return Retry("PutPairs", deadline,
               [&] { return base_->PutPairs(job, pairs, deadline); });
}

absl::StatusOr<std::string> RetryingPairStore::WriteSession() {
  std::string session;
  absl::Status s = Retry("GetWriteSession", absl::InfiniteFuture(), [&] {
    auto r = base_->WriteSession();
    if (r.ok()) session = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return session;
}

absl::Status RetryingPairStore::SyncPairs(absl::string_view job,
                                          absl::string_view session) {
  return Retry("SyncPairs", absl::InfiniteFuture(),
               [&] { return base_->SyncPairs(job, session); });
}

absl::Status RetryingPairStore::AckConsumed(absl::string_view job,
                                            uint64_t pairs) {
  return Retry("AckPairs", absl::InfiniteFuture(),
               [&] { return base_->AckConsumed(job, pairs); });
}

absl::Status RetryingPairStore::SealShard(absl::string_view job, uint32_t shard,
                                          uint64_t pairs) {
  return Retry("SealShard", absl::InfiniteFuture(),
               [&] { return base_->SealShard(job, shard, pairs); });
}

absl::StatusOr<std::unique_ptr<PairReader>> RetryingPairStore::Scan(
    absl::string_view job, const ScanOptions& options) {
  std::unique_ptr<PairReader> reader;
  absl::Status s = Retry("ScanPairs", absl::InfiniteFuture(), [&] {
    auto r = base_->Scan(job, options);
    if (r.ok()) reader = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return std::unique_ptr<PairReader>(new RetryingPairReader(
      this, base_, std::string(job), options, std::move(reader)));
}

absl::StatusOr<JobStats> RetryingPairStore::Stats(absl::string_view job) {
  JobStats stats;
  absl::Status s = Retry("Stats", absl::InfiniteFuture(), [&] {
    auto r = base_->Stats(job);
    if (r.ok()) stats = *r;
    return r.status();
  });
  if (!s.ok()) return s;
  return stats;
}

absl::StatusOr<CheckpointInfo> RetryingPairStore::PutCheckpoint(
    absl::string_view job, absl::string_view name, absl::string_view data,
    absl::string_view expected_sha256) {
  CheckpointInfo info;
  absl::Status s = Retry("PutCheckpoint", absl::InfiniteFuture(), [&] {
    auto r = base_->PutCheckpoint(job, name, data, expected_sha256);
    if (r.ok()) info = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return info;
}

absl::StatusOr<std::string> RetryingPairStore::GetCheckpoint(
    absl::string_view job, absl::string_view name) {
  std::string data;
  absl::Status s = Retry("GetCheckpoint", absl::InfiniteFuture(), [&] {
    auto r = base_->GetCheckpoint(job, name);
    if (r.ok()) data = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return data;
}

absl::StatusOr<CheckpointInfo> RetryingPairStore::ReadCheckpoint(
    absl::string_view job, absl::string_view name, uint64_t offset,
    const CheckpointSink& sink) {
  uint64_t next = offset;
  CheckpointInfo info;
  absl::Status s = Retry("ReadCheckpoint", absl::InfiniteFuture(), [&] {
    auto r = base_->ReadCheckpoint(
        job, name, next, [&](const CheckpointInfo& i, absl::string_view chunk) {
          absl::Status taken = sink(i, chunk);
          if (taken.ok()) next += chunk.size();
          return taken;
        });
    if (r.ok()) info = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return info;
}

absl::StatusOr<std::vector<CheckpointInfo>> RetryingPairStore::ListCheckpoints(
    absl::string_view job) {
  std::vector<CheckpointInfo> list;
  absl::Status s = Retry("ListCheckpoints", absl::InfiniteFuture(), [&] {
    auto r = base_->ListCheckpoints(job);
    if (r.ok()) list = *std::move(r);
    return r.status();
  });
  if (!s.ok()) return s;
  return list;
}

absl::Status RetryingPairStore::DeleteCheckpoint(absl::string_view job,
                                                 absl::string_view name) {
  return Retry("DeleteCheckpoint", absl::InfiniteFuture(),
               [&] { return base_->DeleteCheckpoint(job, name); });
}

absl::StatusOr<uint64_t> RetryingPairStore::KeepLastCheckpoints(
    absl::string_view job, uint64_t keep) {
  uint64_t deleted = 0;
  absl::Status s = Retry("KeepLastCheckpoints", absl::InfiniteFuture(), [&] {
    auto r = base_->KeepLastCheckpoints(job, keep);
    if (r.ok()) deleted = *r;
    return r.status();
  });
  if (!s.ok()) return s;
  return deleted;
}

absl::Status RetryingPairStore::DeleteJob(absl::string_view job) {
  return Retry("DeleteJob", absl::InfiniteFuture(),
               [&] { return base_->DeleteJob(job); });
}

absl::Status RetryingPairStore::DeletePairs(absl::string_view job) {
  return Retry("DeletePairs", absl::InfiniteFuture(),
               [&] { return base_->DeletePairs(job); });
}

}  // namespace lft
