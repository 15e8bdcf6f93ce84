// See sharded_pair_store.h.
#include "latent-store/sharded_pair_store.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/split_mix64.h"
#include "common/base/status.h"

namespace lft {

// Interleaves the partition readers of every store round-robin; a reader
// that is exhausted drops out, the others keep their turns.
class ShardedPairReader : public PairReader {
 public:
  ShardedPairReader(ShardedPairStore* owner, std::string job,
                    std::vector<std::unique_ptr<PairReader>> readers,
                    uint64_t skip)
      : owner_(owner),
        job_(std::move(job)),
        readers_(std::move(readers)),
        done_(readers_.size(), false),
        skip_(skip) {}

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    while (skip_ > 0) {
      LatentPairRecord discard;
      LFT_ASSIGN_OR_RETURN(bool more, NextOne(&discard));
      if (!more) return false;
      --skip_;
    }
    return NextOne(pair);
  }
  void Cancel() override {
    for (const auto& r : readers_) r->Cancel();
  }

 private:
  absl::StatusOr<bool> NextOne(LatentPairRecord* pair) {
    for (size_t tried = 0; tried < readers_.size(); ++tried) {
      const size_t i = turn_;
      turn_ = (turn_ + 1) % readers_.size();
      if (done_[i]) continue;
      LFT_ASSIGN_OR_RETURN(bool more, readers_[i]->Next(pair));
      if (more) {
        owner_->CountRead(job_, i);
        return true;
      }
      done_[i] = true;
    }
    return false;
  }

  ShardedPairStore* const owner_;
  const std::string job_;
  const std::vector<std::unique_ptr<PairReader>> readers_;
  std::vector<bool> done_;
  uint64_t skip_;
  size_t turn_ = 0;
};

ShardedPairStore::ShardedPairStore(
    std::vector<std::unique_ptr<PairStore>> stores)
    : stores_(std::move(stores)) {}

ShardedPairStore::~ShardedPairStore() = default;

size_t ShardedPairStore::StoreOf(uint32_t shard, uint64_t sequence,
                                 size_t count) {
  const uint64_t h =
      SplitMix64Hash(SplitMix64Hash(static_cast<uint64_t>(shard)) ^ sequence);
  return static_cast<size_t>(h % count);
}

absl::Status ShardedPairStore::CreateJob(absl::string_view job,
                                         const JobConfig& config) {
  for (size_t i = 0; i < stores_.size(); ++i) {
    LFT_RETURN_IF_ERROR(Annotate(stores_[i]->CreateJob(job, config),
                                 absl::StrCat("store ", i)));
  }
  return absl::OkStatus();
}

absl::Status ShardedPairStore::PutPairs(
    absl::string_view job, absl::Span<const LatentPairRecord> pairs,
    absl::Time deadline) {
  const size_t n = stores_.size();
  std::vector<std::vector<size_t>> parts(n);
  for (size_t i = 0; i < pairs.size(); ++i) {
    parts[StoreOf(pairs[i].shard, pairs[i].sequence, n)].push_back(i);
  }
  // Each store's share is written on a thread of its own, so that the
  // stores ingest in parallel.
  std::vector<absl::Status> results(n);
  std::vector<std::thread> threads;
  for (size_t s = 0; s < n; ++s) {
    if (parts[s].empty()) continue;
    threads.emplace_back([&, s] {
      std::vector<LatentPairRecord> share;
      share.reserve(parts[s].size());
      for (size_t i : parts[s]) share.push_back(pairs[i]);
      results[s] = Annotate(stores_[s]->PutPairs(job, share, deadline),
                            absl::StrCat("store ", s));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : results) LFT_RETURN_IF_ERROR(r);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ShardedPairStore::WriteSession() {
  std::vector<std::string> sessions;
  for (const auto& s : stores_) {
    LFT_ASSIGN_OR_RETURN(std::string one, s->WriteSession());
    sessions.push_back(std::move(one));
  }
  return absl::StrJoin(sessions, ",");
}

absl::Status ShardedPairStore::SyncPairs(absl::string_view job,
                                         absl::string_view session) {
  std::vector<std::string> sessions = absl::StrSplit(session, ',');
  if (sessions.size() != stores_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("write session '", session, "' names ", sessions.size(),
                     " stores; this job is spread over ", stores_.size()));
  }
  std::vector<absl::Status> results(stores_.size());
  std::vector<std::thread> threads;
  for (size_t s = 0; s < stores_.size(); ++s) {
    threads.emplace_back([&, s] {
      results[s] = Annotate(stores_[s]->SyncPairs(job, sessions[s]),
                            absl::StrCat("store ", s));
    });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& r : results) LFT_RETURN_IF_ERROR(r);
  return absl::OkStatus();
}

void ShardedPairStore::CountRead(const std::string& job, size_t store) {
  absl::MutexLock lock(&mu_);
  Consumption& c = consumption_[job];
  c.read.resize(stores_.size());
  c.acked.resize(stores_.size());
  ++c.read[store];
}

absl::Status ShardedPairStore::AckConsumed(absl::string_view job,
                                           uint64_t pairs) {
  std::vector<uint64_t> share(stores_.size(), 0);
  {
    absl::MutexLock lock(&mu_);
    auto it = consumption_.find(job);
    if (it != consumption_.end()) {
      Consumption& c = it->second;
      for (size_t s = 0; s < stores_.size() && pairs > 0; ++s) {
        const uint64_t open = c.read[s] - c.acked[s];
        share[s] = std::min(open, pairs);
        c.acked[s] += share[s];
        pairs -= share[s];
      }
    }
  }
  share[0] += pairs;  // acks beyond what was read here: store 0 takes them
  for (size_t s = 0; s < stores_.size(); ++s) {
    if (share[s] == 0) continue;
    LFT_RETURN_IF_ERROR(Annotate(stores_[s]->AckConsumed(job, share[s]),
                                 absl::StrCat("store ", s)));
  }
  return absl::OkStatus();
}

absl::Status ShardedPairStore::SealShard(absl::string_view job, uint32_t shard,
                                         uint64_t pairs) {
  return absl::UnimplementedError(absl::StrCat(
      "job '", job, "' shard ", shard, " (", pairs,
      " pairs): streaming mode needs one latent store; its key order is "
      "spread over several here (give the coordinator one --store-address "
      "or turn training.streaming off)"));
}

absl::StatusOr<std::unique_ptr<PairReader>> ShardedPairStore::Scan(
    absl::string_view job, const ScanOptions& options) {
  if (options.range_begin != 0 || options.range_pairs != 0) {
    return absl::InvalidArgumentError(
        "a scan over several stores cannot read a range of the key order "
        "(range_begin, range_pairs): the order is spread over the stores");
  }
  if (options.start_block != 0) {
    return absl::InvalidArgumentError(
        "a scan over several stores cannot start at a block offset "
        "(start_block); resume with skip_pairs");
  }
  if (options.interleave_count > 1) {
    return absl::InvalidArgumentError(
        "a scan over several stores cannot read an interleaved slice "
        "(interleave_count): each store's client interleaves its own "
        "streams (RemotePairStoreOptions::scan_streams)");
  }
  ScanOptions each = options;
  each.skip_pairs = 0;
  std::vector<std::unique_ptr<PairReader>> readers;
  for (size_t s = 0; s < stores_.size(); ++s) {
    auto r = stores_[s]->Scan(job, each);
    if (!r.ok()) return Annotate(r.status(), absl::StrCat("store ", s));
    readers.push_back(std::move(*r));
  }
  return std::unique_ptr<PairReader>(new ShardedPairReader(
      this, std::string(job), std::move(readers), options.skip_pairs));
}

absl::StatusOr<JobStats> ShardedPairStore::Stats(absl::string_view job) {
  JobStats total;
  for (size_t s = 0; s < stores_.size(); ++s) {
    auto st = stores_[s]->Stats(job);
    if (!st.ok()) return Annotate(st.status(), absl::StrCat("store ", s));
    total.pairs += st->pairs;
    total.tokens += st->tokens;
    total.bytes += st->bytes;
    total.consumed += st->consumed;
    total.pending += st->pending;
    if (s == 0) total.checkpoints = st->checkpoints;
    if (s == 0) total.reports = st->reports;
  }
  return total;
}

absl::StatusOr<CheckpointInfo> ShardedPairStore::PutCheckpoint(
    absl::string_view job, absl::string_view name, absl::string_view data,
    absl::string_view expected_sha256) {
  return stores_[0]->PutCheckpoint(job, name, data, expected_sha256);
}

absl::StatusOr<std::string> ShardedPairStore::GetCheckpoint(
    absl::string_view job, absl::string_view name) {
  return stores_[0]->GetCheckpoint(job, name);
}

absl::StatusOr<CheckpointInfo> ShardedPairStore::ReadCheckpoint(
    absl::string_view job, absl::string_view name, uint64_t offset,
    const CheckpointSink& sink) {
  return stores_[0]->ReadCheckpoint(job, name, offset, sink);
}

absl::StatusOr<std::vector<CheckpointInfo>> ShardedPairStore::ListCheckpoints(
    absl::string_view job) {
  return stores_[0]->ListCheckpoints(job);
}

absl::Status ShardedPairStore::DeleteCheckpoint(absl::string_view job,
                                                absl::string_view name) {
  return stores_[0]->DeleteCheckpoint(job, name);
}

absl::StatusOr<uint64_t> ShardedPairStore::KeepLastCheckpoints(
    absl::string_view job, uint64_t keep) {
  return stores_[0]->KeepLastCheckpoints(job, keep);
}

absl::Status ShardedPairStore::DeletePairs(absl::string_view job) {
  absl::Status first;
  for (size_t s = 0; s < stores_.size(); ++s) {
    absl::Status r = stores_[s]->DeletePairs(job);
    if (first.ok() && !r.ok()) first = Annotate(r, absl::StrCat("store ", s));
  }
  return first;
}

absl::Status ShardedPairStore::DeleteJob(absl::string_view job) {
  absl::Status first;
  for (size_t s = 0; s < stores_.size(); ++s) {
    absl::Status r = stores_[s]->DeleteJob(job);
    if (first.ok() && !r.ok()) first = Annotate(r, absl::StrCat("store ", s));
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = consumption_.find(job);
    if (it != consumption_.end()) consumption_.erase(it);
  }
  return first;
}

}  // namespace lft
