#include "latent-store/latent_store.h"

#include <openssl/evp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <system_error>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/log.h"
#include "common/base/split_mix64.h"
#include "common/base/status.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/record_format.h"
#include "latent-store/rocksdb_crc32c.h"
#include "nlohmann/json.hpp"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace lft {

namespace sf = store_format;

namespace {

constexpr char kPairsCf[] = "pairs";
constexpr char kCheckpointsCf[] = "checkpoints";
constexpr char kMetaCf[] = "meta";
// A payload file is closed for appends at this size and a new one started.
constexpr uint64_t kPayloadFileBytes = 1ull << 30;
constexpr char kPayloadFileSuffix[] = ".lftp";

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
    return absl::FailedPreconditionError(absl::StrCat(
        msg, " (is another lft-store process using this directory?)"));
  }
  return absl::InternalError(msg);
}

std::string JobKey(char tag, absl::string_view job) {
  std::string k(1, tag);
  k += sf::LengthPrefixed(job);
  return k;
}

std::string IndexValue(uint32_t tokens, uint64_t bytes) {
  std::string v;
  sf::PutLe32(&v, tokens);
  sf::PutLe64(&v, bytes);
  return v;
}

std::string ConfigJson(const JobConfig& c) {
  nlohmann::json j;
  j["hidden"] = c.hidden;
  j["codec"] = std::string(TensorCodecName(c.codec));
  j["max_pending_pairs"] = c.max_pending_pairs;
  return j.dump();
}

absl::StatusOr<JobConfig> ParseConfigJson(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("hidden") ||
      !j.contains("codec")) {
    return absl::DataLossError(absl::StrCat("malformed job config: ", text));
  }
  JobConfig c;
  c.hidden = j.value("hidden", 0u);
  auto codec = ParseTensorCodec(j.value("codec", std::string()));
  if (!codec.ok()) return absl::DataLossError(codec.status().message());
  c.codec = *codec;
  c.max_pending_pairs = j.value("max_pending_pairs", uint64_t{0});
  return c;
}

std::string BlobPrefix(absl::string_view job, uint64_t blob_id) {
  std::string k = sf::LengthPrefixed(job);
  sf::PutBe64(&k, blob_id);
  return k;
}

struct Manifest {
  CheckpointInfo info;
  uint64_t blob_id = 0;
  uint64_t chunks = 0;
};

std::string ManifestJson(const Manifest& m) {
  nlohmann::json j;
  j["name"] = m.info.name;
  j["bytes"] = m.info.bytes;
  j["sha256"] = m.info.sha256;
  j["created_unix_ms"] = m.info.created_unix_ms;
  j["blob_id"] = m.blob_id;
  j["chunks"] = m.chunks;
  return j.dump();
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("blob_id")) {
    return absl::DataLossError(
        absl::StrCat("malformed checkpoint manifest: ", text));
  }
  Manifest m;
  m.info.name = j.value("name", std::string());
  m.info.bytes = j.value("bytes", uint64_t{0});
  m.info.sha256 = j.value("sha256", std::string());
  m.info.created_unix_ms = j.value("created_unix_ms", int64_t{0});
  m.blob_id = j.value("blob_id", uint64_t{0});
  m.chunks = j.value("chunks", uint64_t{0});
  return m;
}

std::string HexDigest(EVP_MD_CTX* ctx) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

struct Address {
  uint32_t shard;
  uint64_t sequence;
  uint32_t chunk;
};

}  // namespace

absl::Status ValidateJobId(absl::string_view job) {
  if (job.empty() || job.size() > 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("job id must be 1..128 characters, got ", job.size()));
  }
  for (char c : job) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("job id '", absl::CHexEscape(job),
                       "' may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCheckpointName(absl::string_view name) {
  if (name.empty() || name.size() > 200) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint name must be 1..200 characters, got ", name.size()));
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint name '", absl::CHexEscape(name),
                       "' may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePair(const LatentPairRecord& pair, const JobConfig& config,
                          size_t index) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("pair ", index, " (shard ", pair.shard, ", sequence ",
                     pair.sequence, ", chunk ", pair.chunk, "): ", why));
  };
  if (pair.hidden != config.hidden) {
    return bad(absl::StrCat("hidden is ", pair.hidden, ", the job expects ",
                            config.hidden));
  }
  if (pair.codec != config.codec) {
    return bad(absl::StrCat("dtype is ", TensorCodecName(pair.codec),
                            ", the job expects ",
                            TensorCodecName(config.codec)));
  }
  if (pair.tokens == 0) return bad("tokens must be > 0");
  const uint64_t want = EncodedBytes(pair.codec, pair.tokens, pair.hidden);
  if (want > 0xFFFFFFFFull) {
    return bad(absl::StrCat("a tensor of [", pair.tokens, ", ", pair.hidden,
                            "] is over 4 GiB; split the sequence into chunks"));
  }
  if (pair.x0.size() != want || pair.x1.size() != want) {
    return bad(absl::StrCat("x0/x1 are ", pair.x0.size(), "/", pair.x1.size(),
                            " bytes; shape [", pair.tokens, ", ", pair.hidden,
                            "] in ", TensorCodecName(pair.codec), " needs ",
                            want));
  }
  if (!pair.token_ids.empty() && pair.token_ids.size() != pair.tokens) {
    return bad(absl::StrCat("has ", pair.token_ids.size(),
                            " token ids; expected 0 or ", pair.tokens));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Reader

// Reads one partition's keys with `threads` fetchers that run ahead of the
// consumer by at most `capacity` pairs, and hands records out in order.
// Several fetchers keep several reads in flight, which a single
// sequential Get loop cannot (blob reads block on the disk one at a time).
class LocalPairReader : public PairReader {
 public:
  LocalPairReader(LatentStore* store, const rocksdb::Snapshot* snapshot,
                  std::string job, std::vector<Address> keys,
                  LatentStore::PayloadFiles files, uint32_t readahead,
                  uint32_t threads)
      : store_(store),
        snapshot_(snapshot),
        job_(std::move(job)),
        keys_(std::move(keys)),
        files_(std::move(files)),
        capacity_(std::max<uint32_t>(1, readahead)) {
    read_payload_ = [this](uint64_t file, uint64_t offset, size_t bytes,
                           std::string* x0, std::string* x1) -> absl::Status {
      auto it = files_.find(file);
      if (it == files_.end()) {
        return absl::DataLossError(absl::StrCat(
            "payload file ", file, " of job '", job_, "' is missing"));
      }
      const PayloadFile& f = *it->second;
      LFT_ASSIGN_OR_RETURN(uint64_t size, f.Size());
      const uint64_t both = 2 * static_cast<uint64_t>(bytes);
      if (offset > size || both > size - offset) {
        return absl::DataLossError(absl::StrCat(
            "payload file ", f.path(), " ends before offset ", offset + both));
      }
      x0->resize(bytes);
      x1->resize(bytes);
      LFT_RETURN_IF_ERROR(f.ReadAt(offset, bytes, x0->data()));
      return f.ReadAt(offset + bytes, bytes, x1->data());
    };
    const uint32_t n = std::max<uint32_t>(
        1, std::min<uint32_t>(threads, static_cast<uint32_t>(capacity_)));
    for (uint32_t t = 0; t < n; ++t) threads_.emplace_back([this] { Fetch(); });
  }
  ~LocalPairReader() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    for (auto& t : threads_) t.join();
    store_->db_->ReleaseSnapshot(snapshot_);
  }

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](LocalPairReader* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu_) {
          return r->next_out_ >= r->keys_.size() ||
                 r->error_index_ <= r->next_out_ ||
                 r->ready_.count(r->next_out_) > 0;
        },
        this));
    if (error_index_ <= next_out_) return error_;
    if (next_out_ >= keys_.size()) return false;
    auto it = ready_.find(next_out_);
    *pair = std::move(it->second);
    ready_.erase(it);
    ++next_out_;
    return true;
  }

 private:
  void Fetch() {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot_;
    ro.fill_cache = false;  // payloads are read once per epoch
    // Every record carries its own crc32c (hardware-accelerated here),
    // verified by DecodeRecord; RocksDB's software crc32c of blob records
    // would only repeat the check at a quarter of the speed.
    ro.verify_checksums = false;
    rocksdb::PinnableSlice value;
    while (true) {
      size_t i;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](LocalPairReader* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(r->mu_) {
              return r->cancelled_ || r->next_fetch_ >= r->keys_.size() ||
                     r->next_fetch_ >= r->error_index_ ||
                     r->next_fetch_ < r->next_out_ + r->capacity_;
            },
            this));
        if (cancelled_ || next_fetch_ >= keys_.size() ||
            next_fetch_ >= error_index_) {
          return;
        }
        i = next_fetch_++;
      }
      const Address& a = keys_[i];
      const std::string key = sf::PairKey(job_, a.shard, a.sequence, a.chunk);
      value.Reset();
      rocksdb::Status s = store_->db_->Get(ro, store_->pairs_cf_, key, &value);
      LatentPairRecord rec;
      absl::Status status;
      if (s.IsNotFound()) {
        status = absl::DataLossError(absl::StrCat(
            "job '", job_, "': the index lists shard ", a.shard, " sequence ",
            a.sequence, " chunk ", a.chunk, " but its record is missing"));
      } else if (!s.ok()) {
        status = FromRocks(s, "reading a pair");
      } else {
        status = sf::DecodeRecord(absl::string_view(value.data(), value.size()),
                                  key, &rec, &read_payload_);
      }
      if (status.ok()) {
        // The record's bytes wherever its payload lives.
        store_->read_bytes_.Increment(
            static_cast<double>(sf::RecordBytes(rec)));
        store_->pairs_read_.Increment();
        rec.shard = a.shard;
        rec.sequence = a.sequence;
        rec.chunk = a.chunk;
      }
      absl::MutexLock lock(&mu_);
      if (!status.ok()) {
        if (i < error_index_) {
          error_index_ = i;
          error_ = status;
        }
      } else {
        ready_.emplace(i, std::move(rec));
      }
    }
  }

  LatentStore* const store_;
  const rocksdb::Snapshot* const snapshot_;
  const std::string job_;
  const std::vector<Address> keys_;
  // The job's payload files when the scan started (after its snapshot, so
  // every record the snapshot sees has its file here).
  const LatentStore::PayloadFiles files_;
  sf::PayloadReadFn read_payload_;
  const size_t capacity_;
  std::vector<std::thread> threads_;

  absl::Mutex mu_;
  size_t next_fetch_ ABSL_GUARDED_BY(mu_) = 0;  // next index to claim
  size_t next_out_ ABSL_GUARDED_BY(mu_) = 0;    // next index to hand out
  std::map<size_t, LatentPairRecord> ready_ ABSL_GUARDED_BY(mu_);
  size_t error_index_ ABSL_GUARDED_BY(mu_) = SIZE_MAX;  // first failed index
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

// ---------------------------------------------------------------------------
// Open / state

absl::StatusOr<std::unique_ptr<LatentStore>> LatentStore::Open(
    const std::string& path, const LatentStoreOptions& options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = options.create_if_missing;
  db_options.create_missing_column_families = true;
  // Pair batches skip the WAL (LatentStoreOptions::pairs_in_wal): atomic
  // flush keeps the pairs, their index and the counters of one batch
  // together on disk, so no crash can leave an index entry without its
  // payload. Flushes of full memtables run in parallel with each other and
  // with new writes.
  db_options.atomic_flush = true;
  // After a background error (a full disk) the next write calls
  // DB::Resume() itself (Checked); RocksDB's own retry loop would hold
  // recovery "in progress" and answer every Resume() Busy.
  db_options.max_bgerror_resume_count = 0;
  db_options.max_background_jobs = 8;
  db_options.max_background_flushes = 4;
  db_options.bytes_per_sync = 8 << 20;
  // Scans read blob files front to back; RocksDB's default fadvise(RANDOM)
  // would turn off the kernel's readahead for them.
  db_options.advise_random_on_open = false;

  rocksdb::ColumnFamilyOptions pairs;
  pairs.write_buffer_size = options.write_buffer_bytes;
  pairs.max_write_buffer_number = 6;
  pairs.target_file_size_base = 64 << 20;
  // Latents are float noise to a compressor; measured (docs/benchmarks.md)
  // it only costs CPU.
  pairs.compression = rocksdb::kNoCompression;
  pairs.enable_blob_files = options.enable_blob_files;
  pairs.min_blob_size = options.min_blob_size;
  pairs.blob_file_size = 256 << 20;
  pairs.blob_compression_type = rocksdb::kNoCompression;
  pairs.enable_blob_garbage_collection = options.enable_blob_files;

  // XXH3 block checksums: Debian's librocksdb computes crc32c in software
  // (about 0.5 GB/s on x86, see docs/benchmarks.md), which would cap reads.
  rocksdb::BlockBasedTableOptions table;
  table.checksum = rocksdb::kXXH3;
  pairs.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::ColumnFamilyOptions checkpoints = pairs;
  checkpoints.write_buffer_size = 64 << 20;

  rocksdb::ColumnFamilyOptions meta;
  meta.write_buffer_size = 16 << 20;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
      {kPairsCf, pairs},
      {kCheckpointsCf, checkpoints},
      {kMetaCf, meta}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, cfs, &handles, &db);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("opening latent store at ", path));
  }
  std::unique_ptr<LatentStore> store(
      new LatentStore(path, options, db, std::move(handles)));
  LFT_RETURN_IF_ERROR(store->LoadState());
  LFT_RETURN_IF_ERROR(store->LoadPayloadFiles());
  LFT_RETURN_IF_ERROR(store->CollectAbandonedUploads());
  LogInfo("latent store opened",
          {{"path", path},
           {"jobs", store->ListJobs().size()},
           {"blob_files", options.enable_blob_files ? "on" : "off"},
           {"payload_files", store->payload_files_ ? "on" : "off"},
           {"sync", options.sync ? "on" : "off"},
           {"rocksdb_crc32c",
            RocksDbCrc32cIsAccelerated() ? "sse4.2 (lft)" : "software"}});
  return store;
}

LatentStore::LatentStore(const std::string& path,
                         const LatentStoreOptions& options, rocksdb::DB* db,
                         std::vector<rocksdb::ColumnFamilyHandle*> handles)
    : path_(path),
      options_(options),
      payload_files_(options.payload_files && !options.pairs_in_wal),
      write_session_(absl::StrCat(absl::Hex(
          SplitMix64Hash(static_cast<uint64_t>(absl::GetCurrentTimeNanos()) ^
                         (static_cast<uint64_t>(getpid()) << 40)),
          absl::kZeroPad16))),
      db_(db),
      handles_(std::move(handles)),
      pairs_cf_(handles_[1]),
      checkpoints_cf_(handles_[2]),
      meta_cf_(handles_[3]),
      own_metrics_(options.metrics ? nullptr
                                   : std::make_unique<MetricsRegistry>()),
      metrics_(options.metrics ? options.metrics : own_metrics_.get()),
      written_bytes_(metrics_->Counter(
          "lft_store_written_bytes_total",
          "Bytes of pair records written (headers and payloads)")),
      pairs_written_(metrics_->Counter("lft_store_pairs_written_total",
                                       "Pairs acknowledged to writers")),
      read_bytes_(metrics_->Counter("lft_store_read_bytes_total",
                                    "Bytes of pair records read by scans")),
      pairs_read_(metrics_->Counter("lft_store_pairs_read_total",
                                    "Pairs read by scans")),
      backpressure_seconds_(metrics_->Counter(
          "lft_store_backpressure_wait_seconds_total",
          "Seconds writers spent blocked on a full streaming job")),
      checkpoint_bytes_written_(
          metrics_->Counter("lft_store_checkpoint_written_bytes_total",
                            "Bytes of checkpoint blobs written")),
      sync_seconds_(metrics_->Counter(
          "lft_store_sync_seconds_total",
          "Seconds spent making acknowledged pairs durable (SyncPairs)")) {}

LatentStore::~LatentStore() {
  // A clean shutdown leaves no memtable behind: pairs outside the WAL reach
  // the disk, and the WAL files become obsolete and are deleted. Payload
  // files first, so that no flushed reference points at unsynced bytes.
  std::vector<std::string> jobs;
  {
    absl::MutexLock lock(&payload_mu_);
    for (const auto& entry : payloads_) jobs.push_back(entry.first);
  }
  for (const std::string& job : jobs) SyncPayloadFiles(job).IgnoreError();
  rocksdb::FlushOptions fo;
  fo.wait = true;
  db_->Flush(fo, {pairs_cf_, checkpoints_cf_, meta_cf_}).PermitUncheckedError();
  for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close().PermitUncheckedError();
  delete db_;
}

prometheus::Gauge* LatentStore::PendingGauge(const std::string& job) {
  return &metrics_->Gauge("lft_store_pending_pairs",
                          "Pairs written but not yet acknowledged by readers",
                          {{"job", job}});
}

std::string LatentStore::CountersValue(const JobState& st) {
  std::string v;
  sf::PutLe64(&v, st.pairs);
  sf::PutLe64(&v, st.tokens);
  sf::PutLe64(&v, st.bytes);
  sf::PutLe64(&v, st.consumed);
  return v;
}

absl::Status LatentStore::LoadState() {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  const std::string prefix(1, sf::kTagJob);
  std::map<std::string, JobState, std::less<>> jobs;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    absl::string_view k(it->key().data(), it->key().size());
    if (k.size() < 2 ||
        static_cast<size_t>(static_cast<uint8_t>(k[1])) != k.size() - 2) {
      return absl::DataLossError("malformed job key in meta column family");
    }
    std::string job(k.substr(2));
    LFT_ASSIGN_OR_RETURN(JobConfig config,
                         ParseConfigJson(absl::string_view(
                             it->value().data(), it->value().size())));
    JobState st;
    st.config = config;
    std::string counters;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_cf_,
                                 JobKey(sf::kTagCounters, job), &counters);
    if (s.ok() && counters.size() == 32) {
      st.pairs = sf::GetLe64(counters.data());
      st.tokens = sf::GetLe64(counters.data() + 8);
      st.bytes = sf::GetLe64(counters.data() + 16);
      st.consumed = sf::GetLe64(counters.data() + 24);
    } else if (!s.ok() && !s.IsNotFound()) {
      return FromRocks(s, "reading job counters");
    }
    st.pending_gauge = PendingGauge(job);
    st.pending_gauge->Set(static_cast<double>(st.pairs - st.consumed));
    jobs.emplace(std::move(job), std::move(st));
  }
  LFT_RETURN_IF_ERROR(FromRocks(it->status(), "loading jobs"));
  for (auto& [job, st] : jobs) {
    const std::string seals = JobKey(sf::kTagSeal, job);
    std::unique_ptr<rocksdb::Iterator> si(
        db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
    for (si->Seek(seals); si->Valid() && si->key().starts_with(seals);
         si->Next()) {
      if (si->key().size() != seals.size() + 4 || si->value().size() != 8) {
        return absl::DataLossError(
            "malformed shard seal in meta column family");
      }
      st.sealed[sf::GetBe32(si->key().data() + seals.size())] =
          sf::GetLe64(si->value().data());
    }
    LFT_RETURN_IF_ERROR(FromRocks(si->status(), "loading shard seals"));
    LFT_RETURN_IF_ERROR(AdvanceHead(job, &st));
  }
  absl::MutexLock lock(&mu_);
  uint64_t gen = 0;
  for (auto& [name, st] : jobs) st.generation = ++gen;
  blob_counter_ = gen;
  jobs_ = std::move(jobs);
  return absl::OkStatus();
}

absl::Status LatentStore::CollectAbandonedUploads() {
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  const std::string prefix(1, sf::kTagUpload);
  rocksdb::WriteBatch batch;
  int abandoned = 0;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    absl::string_view k(it->key().data(), it->key().size());
    if (k.size() < 2) continue;
    const size_t len = static_cast<uint8_t>(k[1]);
    if (k.size() != 2 + len + 8) continue;
    const std::string job(k.substr(2, len));
    const uint64_t blob = sf::GetBe64(k.data() + 2 + len);
    const std::string from = BlobPrefix(job, blob);
    batch.DeleteRange(checkpoints_cf_, from, sf::PrefixSuccessor(from));
    batch.Delete(meta_cf_, it->key());
    ++abandoned;
  }
  LFT_RETURN_IF_ERROR(FromRocks(it->status(), "listing checkpoint uploads"));
  if (abandoned == 0) return absl::OkStatus();
  LogInfo("removed unpublished checkpoint uploads", {{"count", abandoned}});
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return Checked("removing abandoned uploads",
                 [&] { return db_->Write(wo, &batch); });
}

std::vector<std::string> LatentStore::ListJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> out;
  for (const auto& [name, st] : jobs_) out.push_back(name);
  return out;
}

absl::StatusOr<JobConfig> LatentStore::GetJobConfig(absl::string_view job) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end()) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' is not registered with the store"));
  }
  return it->second.config;
}

// ---------------------------------------------------------------------------
// Jobs and pairs

absl::Status LatentStore::CreateJob(absl::string_view job,
                                    const JobConfig& config) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  if (config.hidden == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("job '", job, "': hidden must be > 0"));
  }
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it != jobs_.end()) {
      const JobConfig& have = it->second.config;
      if (have.hidden != config.hidden || have.codec != config.codec) {
        return absl::AlreadyExistsError(absl::StrCat(
            "job '", job, "' exists with hidden ", have.hidden, " and dtype ",
            TensorCodecName(have.codec), "; asked for hidden ", config.hidden,
            " and dtype ", TensorCodecName(config.codec),
            " (delete the job or use another id)"));
      }
      if (have.max_pending_pairs == config.max_pending_pairs) {
        return absl::OkStatus();
      }
    }
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  LFT_RETURN_IF_ERROR(Checked("registering job", [&] {
    return db_->Put(wo, meta_cf_, JobKey(sf::kTagJob, job), ConfigJson(config));
  }));
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = jobs_.try_emplace(std::string(job));
  it->second.config = config;
  if (inserted) {
    it->second.generation = ++blob_counter_;
    it->second.pending_gauge = PendingGauge(std::string(job));
    it->second.pending_gauge->Set(0);
  }
  return absl::OkStatus();
}

absl::Status LatentStore::PutPairs(absl::string_view job,
                                   absl::Span<const LatentPairRecord> pairs,
                                   absl::Time deadline) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  JobConfig config;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "job '", job,
          "' is not registered with the store; call CreateJob first"));
    }
    config = it->second.config;
    generation = it->second.generation;
  }
  for (size_t i = 0; i < pairs.size(); ++i) {
    LFT_RETURN_IF_ERROR(ValidatePair(pairs[i], config, i));
  }
  if (pairs.empty()) return absl::OkStatus();
  uint64_t incoming = 0;
  for (const LatentPairRecord& p : pairs)
    incoming += p.x0.size() + p.x1.size() + 4 * p.token_ids.size();
  LFT_RETURN_IF_ERROR(CheckFreeSpace(incoming, "writing pairs"));

  const uint64_t n = pairs.size();
  // The batch's shard if all its pairs share one (a teacher's batch does).
  uint32_t batch_shard = pairs[0].shard;
  bool one_shard = true;
  for (const LatentPairRecord& p : pairs) one_shard &= p.shard == batch_shard;
  // Back-pressure: admit the batch when it fits under the bound (or the job
  // is drained, so one oversized batch cannot wait forever). Admitted but
  // unwritten batches are counted in `reserved`, so concurrent writers
  // cannot overshoot the bound together. A batch of the head shard is also
  // admitted while the final prefix (sealed shards + head shard) holds fewer
  // than `bound` unconsumed pairs: streaming readers consume that prefix in
  // key order, so pairs of later shards filling the bound must not keep
  // out the pairs the readers wait for. The wait holds no write lock:
  // other jobs keep writing.
  struct Wait {
    LatentStore* store;
    absl::string_view job;
    uint64_t generation;
    uint64_t n;
    bool head_candidate;
    uint32_t shard;
    bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(store->mu_) {
      auto it = store->jobs_.find(job);
      if (it == store->jobs_.end() || it->second.generation != generation) {
        return true;
      }
      const JobState& st = it->second;
      const uint64_t bound = st.config.max_pending_pairs;
      if (bound == 0) return true;
      const uint64_t pending = st.pairs + st.reserved - st.consumed;
      if (pending == 0 || pending + n <= bound) return true;
      return head_candidate && shard == st.head_shard &&
             st.sealed_prefix_pairs + st.head_pairs < st.consumed + bound;
    }
  } wait{this, job, generation, n, one_shard, batch_shard};
  const absl::Time wait_start = absl::Now();
  {
    bool ready = mu_.LockWhenWithDeadline(absl::Condition(&wait, &Wait::Ready),
                                          deadline);
    auto it = jobs_.find(job);
    const bool gone = it == jobs_.end() || it->second.generation != generation;
    uint64_t pending = 0, bound = 0;
    if (!gone) {
      pending = it->second.pairs + it->second.reserved - it->second.consumed;
      bound = it->second.config.max_pending_pairs;
      if (ready) it->second.reserved += n;
    }
    mu_.Unlock();
    const absl::Duration waited = absl::Now() - wait_start;
    if (waited > absl::Milliseconds(1)) {
      backpressure_seconds_.Increment(absl::ToDoubleSeconds(waited));
    }
    if (gone) {
      return absl::AbortedError(absl::StrCat(
          "job '", job, "' was deleted while this write was pending"));
    }
    if (!ready) {
      return absl::DeadlineExceededError(absl::StrCat(
          "job '", job, "' holds ", pending, " unconsumed pairs (bound ", bound,
          "); no reader acknowledged consumption before the deadline; ",
          "nothing of this batch of ", n, " pairs was written"));
    }
  }
  struct Unreserve {
    LatentStore* store;
    absl::string_view job;
    uint64_t generation;
    uint64_t n;
    ~Unreserve() {
      absl::MutexLock lock(&store->mu_);
      auto it = store->jobs_.find(job);
      if (it != store->jobs_.end() && it->second.generation == generation) {
        it->second.reserved -= n;
      }
    }
  } unreserve{this, job, generation, n};
  // The payloads are written (to payload files) or copied into the batch
  // before taking write_mu_, so concurrent writers do that in parallel;
  // under the lock only the index look-ups, the counters and RocksDB's
  // memtable insert remain.
  rocksdb::WriteBatch batch;
  std::vector<uint64_t> value_bytes(pairs.size());
  {
    std::string prefix;
    const uint64_t lane = payload_files_ ? next_payload_lane_.fetch_add(
                                               1, std::memory_order_relaxed)
                                         : 0;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const LatentPairRecord& p = pairs[i];
      const std::string key = sf::PairKey(job, p.shard, p.sequence, p.chunk);
      value_bytes[i] = sf::RecordBytes(p);
      if (payload_files_) {
        LFT_ASSIGN_OR_RETURN(
            PayloadSlot slot,
            ReservePayload(job, generation, lane, p.x0.size() + p.x1.size()));
        LFT_RETURN_IF_ERROR(slot.file->WriteAt(slot.offset, p.x0, p.x1));
        sf::EncodeRecordPrefix(p, &prefix, sf::kFlagPayloadInFile);
        prefix += sf::PayloadReference(slot.file->id(), slot.offset);
        batch.Put(pairs_cf_, key, prefix);
        continue;
      }
      sf::EncodeRecordPrefix(p, &prefix);
      rocksdb::Slice key_parts[] = {rocksdb::Slice(key)};
      rocksdb::Slice value_parts[] = {
          rocksdb::Slice(prefix), rocksdb::Slice(p.x0), rocksdb::Slice(p.x1)};
      batch.Put(pairs_cf_, rocksdb::SliceParts(key_parts, 1),
                rocksdb::SliceParts(value_parts, 3));
    }
  }
  {
    absl::MutexLock write_lock(&write_mu_);
    LFT_RETURN_IF_ERROR(CheckJobGeneration(job, generation));
    // Each pair's index entry tells whether it overwrites.
    std::map<std::string, std::pair<uint32_t, uint64_t>> seen;  // batch-local
    std::map<uint32_t, uint64_t> new_per_shard;
    int64_t d_pairs = 0, d_tokens = 0, d_bytes = 0;
    uint64_t written = 0;
    std::string index_value;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const LatentPairRecord& p = pairs[i];
      const std::string key = sf::PairKey(job, p.shard, p.sequence, p.chunk);
      const std::string index_key = std::string(1, sf::kTagIndex) + key;
      auto prev = seen.find(key);
      if (prev != seen.end()) {
        d_tokens -= prev->second.first;
        d_bytes -= static_cast<int64_t>(prev->second.second);
      } else {
        rocksdb::PinnableSlice old;
        rocksdb::Status s =
            db_->Get(rocksdb::ReadOptions(), meta_cf_, index_key, &old);
        if (s.ok() && old.size() == 12) {
          d_tokens -= sf::GetLe32(old.data());
          d_bytes -= static_cast<int64_t>(sf::GetLe64(old.data() + 4));
        } else if (s.IsNotFound()) {
          ++d_pairs;
          ++new_per_shard[p.shard];
        } else {
          return FromRocks(s, "reading the pair index");
        }
      }
      seen[key] = {p.tokens, value_bytes[i]};
      d_tokens += p.tokens;
      d_bytes += static_cast<int64_t>(value_bytes[i]);
      written += value_bytes[i];
      index_value = IndexValue(p.tokens, value_bytes[i]);
      batch.Put(meta_cf_, index_key, index_value);
    }
    JobState next;
    {
      absl::MutexLock lock(&mu_);
      next = jobs_.find(job)->second;
    }
    next.pairs += d_pairs;
    next.tokens =
        static_cast<uint64_t>(static_cast<int64_t>(next.tokens) + d_tokens);
    next.bytes =
        static_cast<uint64_t>(static_cast<int64_t>(next.bytes) + d_bytes);
    batch.Put(meta_cf_, JobKey(sf::kTagCounters, job), CountersValue(next));
    LFT_RETURN_IF_ERROR(Checked("writing pairs", [&] {
      return db_->Write(PairWriteOptions(), &batch);
    }));
    {
      absl::MutexLock lock(&mu_);
      JobState& st = jobs_.find(job)->second;
      st.pairs = next.pairs;
      st.tokens = next.tokens;
      st.bytes = next.bytes;
      // write_mu_ is held, so the head cannot have moved since the look-ups.
      auto head = new_per_shard.find(st.head_shard);
      if (head != new_per_shard.end()) st.head_pairs += head->second;
      st.pending_gauge->Set(static_cast<double>(st.pairs - st.consumed));
    }
    written_bytes_.Increment(static_cast<double>(written));
    pairs_written_.Increment(static_cast<double>(n));
  }
  return absl::OkStatus();
}

absl::Status LatentStore::AckConsumed(absl::string_view job, uint64_t pairs) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  // Update the in-memory count first (releasing blocked writers, which hold
  // write_mu_), then persist it. A crash between the two only makes the
  // store think fewer pairs were consumed: writers wait, nothing is lost.
  JobState snapshot;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
    JobState& st = it->second;
    st.consumed = std::min(st.pairs, st.consumed + pairs);
    st.pending_gauge->Set(static_cast<double>(st.pairs - st.consumed));
  }
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return absl::OkStatus();  // deleted meanwhile
    snapshot = it->second;
    snapshot.consumed = std::min(snapshot.pairs, snapshot.consumed);
  }
  // The counters row is also written by PutPairs: it shares the pairs'
  // durability, so that a WAL replay never restores counts of pairs whose
  // payloads were lost.
  return Checked("persisting consumed count", [&] {
    return db_->Put(PairWriteOptions(), meta_cf_, JobKey(sf::kTagCounters, job),
                    CountersValue(snapshot));
  });
}

absl::StatusOr<uint64_t> LatentStore::CountShardPairs(absl::string_view job,
                                                      uint32_t shard) {
  std::string prefix = JobKey(sf::kTagIndex, job);
  sf::PutBe32(&prefix, shard);
  uint64_t count = 0;
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    ++count;
  }
  LFT_RETURN_IF_ERROR(FromRocks(it->status(), "counting a shard's pairs"));
  return count;
}

absl::Status LatentStore::AdvanceHead(absl::string_view job, JobState* st) {
  for (auto s = st->sealed.find(st->head_shard); s != st->sealed.end();
       s = st->sealed.find(st->head_shard)) {
    st->sealed_prefix_pairs += s->second;
    ++st->head_shard;
  }
  LFT_ASSIGN_OR_RETURN(st->head_pairs, CountShardPairs(job, st->head_shard));
  return absl::OkStatus();
}

absl::Status LatentStore::SealShard(absl::string_view job, uint32_t shard,
                                    uint64_t pairs) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  absl::MutexLock write_lock(&write_mu_);
  JobState next;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
    auto s = it->second.sealed.find(shard);
    if (s != it->second.sealed.end() && s->second == pairs) {
      return absl::OkStatus();
    }
    next = it->second;
  }
  LFT_ASSIGN_OR_RETURN(const uint64_t stored, CountShardPairs(job, shard));
  if (stored != pairs) {
    return absl::FailedPreconditionError(
        absl::StrCat("job '", job, "' shard ", shard, ": sealing with ", pairs,
                     " pairs but the store holds ", stored,
                     " (were the shard's writes synced before sealing?)"));
  }
  std::string key = JobKey(sf::kTagSeal, job);
  sf::PutBe32(&key, shard);
  std::string value;
  sf::PutLe64(&value, pairs);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  LFT_RETURN_IF_ERROR(Checked(
      "sealing a shard", [&] { return db_->Put(wo, meta_cf_, key, value); }));
  next.sealed[shard] = pairs;
  LFT_RETURN_IF_ERROR(AdvanceHead(job, &next));
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end()) return absl::OkStatus();  // deleted meanwhile
  JobState& st = it->second;
  st.sealed = std::move(next.sealed);
  st.head_shard = next.head_shard;
  st.sealed_prefix_pairs = next.sealed_prefix_pairs;
  st.head_pairs = next.head_pairs;
  return absl::OkStatus();
}

absl::Status LatentStore::CheckFreeSpace(uint64_t bytes,
                                         absl::string_view what) {
  struct statvfs fs;
  if (statvfs(db_->GetName().c_str(), &fs) != 0) return absl::OkStatus();
  const uint64_t free_bytes =
      static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_frsize);
  // Unflushed memtables are not counted (RocksDB reports their arenas, not
  // their data): the reserve is sized to cover them (latent_store.h).
  const uint64_t needed = bytes + options_.min_free_disk_bytes;
  if (free_bytes >= needed) return absl::OkStatus();
  LogWarning(
      "latent store disk nearly full; refusing writes until space "
      "returns",
      {{"path", db_->GetName()},
       {"free_bytes", free_bytes},
       {"needed_bytes", needed}});
  return absl::ResourceExhaustedError(absl::StrCat(
      what, ": the disk of the latent store at ", db_->GetName(), " is full (",
      free_bytes, " bytes free; this write needs ", bytes,
      " and the reserve --min-free-disk-mib ",
      options_.min_free_disk_bytes >> 20,
      " MiB); free space there: writes resume by themselves, reads are "
      "served meanwhile"));
}

absl::Status LatentStore::Checked(absl::string_view what,
                                  const std::function<rocksdb::Status()>& op) {
  auto no_space = [&](const rocksdb::Status& s) {
    out_of_space_ = true;
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": the disk of the latent store at ", db_->GetName(),
        " is full (", s.ToString(),
        "); free space there: writes resume by themselves, reads are "
        "served meanwhile"));
  };
  if (out_of_space_.load()) {
    // Resume() re-opens the WAL and flushes what the failed write left in
    // the memtables; no write touches the old WAL writer before it (a write
    // after a failed WAL append trips RocksDB's sync_without_flush_called_
    // assertion).
    absl::MutexLock lock(&resume_mu_);
    if (out_of_space_.load()) {
      rocksdb::Status r = db_->Resume();
      // Busy: RocksDB's own recovery (retryable I/O errors such as ENOSPC)
      // is under way; the write below then answers whether it is done.
      if (!r.ok() && !r.IsBusy()) {
        if (r.IsNoSpace() || r.subcode() == rocksdb::Status::kNoSpace)
          return no_space(r);
        return FromRocks(r, absl::StrCat(what, ": resuming after a full disk"));
      }
      if (r.ok()) {
        out_of_space_ = false;
        LogInfo("latent store writes resumed after a full disk",
                {{"path", db_->GetName()}});
      }
    }
  }
  rocksdb::Status s = op();
  if (s.ok()) out_of_space_ = false;
  if (s.IsNoSpace() || s.subcode() == rocksdb::Status::kNoSpace) {
    LogWarning("latent store disk full; refusing writes until space returns",
               {{"path", db_->GetName()}, {"error", s.ToString()}});
    return no_space(s);
  }
  return FromRocks(s, what);
}

rocksdb::WriteOptions LatentStore::PairWriteOptions() const {
  rocksdb::WriteOptions wo;
  if (options_.pairs_in_wal && !options_.disable_wal) {
    wo.sync = options_.sync;
  } else {
    wo.disableWAL = true;
  }
  return wo;
}

absl::StatusOr<std::string> LatentStore::WriteSession() {
  return write_session_;
}

absl::Status LatentStore::SyncPairs(absl::string_view job,
                                    absl::string_view session) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
  }
  if (session != write_session_) {
    return absl::AbortedError(absl::StrCat(
        "the store restarted since these pairs were written (write session ",
        session, ", now ", write_session_,
        "); pairs acknowledged before the restart may be lost: write them "
        "again"));
  }
  if (options_.pairs_in_wal && options_.sync && !options_.disable_wal) {
    return absl::OkStatus();  // every acknowledged batch was fsync'd
  }
  const absl::Time start = absl::Now();
  // The payloads first: once the flush below makes the index durable, every
  // reference in it must point at synced bytes.
  const std::string what = absl::StrCat("syncing pairs of job '", job, "'");
  absl::Status s = SyncPayloadFiles(job);
  if (s.ok()) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    fo.allow_write_stall = true;
    s = Checked(what, [&] { return db_->Flush(fo, {pairs_cf_, meta_cf_}); });
  } else {
    s = Annotate(s, what);
  }
  sync_seconds_.Increment(absl::ToDoubleSeconds(absl::Now() - start));
  return s;
}

absl::StatusOr<std::unique_ptr<PairReader>> LatentStore::Scan(
    absl::string_view job, const ScanOptions& options) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  if (options.partitions == 0 || options.partition >= options.partitions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partition ", options.partition, " of ", options.partitions,
        ": need partitions >= 1 and partition < partitions"));
  }
  if (options.block_pairs == 0) {
    return absl::InvalidArgumentError("block_pairs must be >= 1");
  }
  const uint32_t interleave = std::max<uint32_t>(1, options.interleave_count);
  if (options.interleave_index >= interleave) {
    return absl::InvalidArgumentError(
        absl::StrCat("interleave_index ", options.interleave_index, " of ",
                     interleave, ": need interleave_index < interleave_count"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
  }
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  const std::string prefix =
      std::string(1, sf::kTagIndex) + sf::LengthPrefixed(job);
  std::vector<Address> all;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, meta_cf_));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      Address a;
      absl::Status s = sf::ParsePairAddress(
          absl::string_view(it->key().data() + prefix.size(),
                            it->key().size() - prefix.size()),
          &a.shard, &a.sequence, &a.chunk);
      if (!s.ok()) {
        db_->ReleaseSnapshot(snapshot);
        return s;
      }
      all.push_back(a);
    }
    if (!it->status().ok()) {
      db_->ReleaseSnapshot(snapshot);
      return FromRocks(it->status(), "listing pairs");
    }
  }
  if (options.range_begin > 0 || options.range_pairs > 0) {
    const uint64_t begin = std::min<uint64_t>(options.range_begin, all.size());
    const uint64_t end =
        options.range_pairs == 0
            ? all.size()
            : std::min<uint64_t>(all.size(), begin + options.range_pairs);
    all = std::vector<Address>(all.begin() + static_cast<std::ptrdiff_t>(begin),
                               all.begin() + static_cast<std::ptrdiff_t>(end));
  }
  const uint64_t num_blocks =
      (all.size() + options.block_pairs - 1) / options.block_pairs;
  std::vector<uint64_t> order(num_blocks);
  for (uint64_t i = 0; i < num_blocks; ++i) order[i] = i;
  if (options.shuffle && num_blocks > 1) {
    uint64_t state = options.seed;
    uint64_t mix = options.epoch ^ 0xA0761D6478BD642Full;
    state ^= SplitMix64Next(&mix);
    for (uint64_t i = num_blocks - 1; i > 0; --i) {
      const uint64_t j = SplitMix64Next(&state) % (i + 1);
      std::swap(order[i], order[j]);
    }
  }
  std::vector<Address> mine;
  for (uint64_t b = options.start_block + options.partition; b < num_blocks;
       b += options.partitions) {
    const uint64_t block = order[b];
    const uint64_t begin = block * options.block_pairs;
    const uint64_t end =
        std::min<uint64_t>(all.size(), begin + options.block_pairs);
    for (uint64_t i = begin; i < end; ++i) mine.push_back(all[i]);
  }
  if (options.skip_pairs >= mine.size()) {
    mine.clear();
  } else {
    mine.erase(mine.begin(),
               mine.begin() + static_cast<std::ptrdiff_t>(options.skip_pairs));
  }
  if (interleave > 1) {
    size_t kept = 0;
    for (size_t i = options.interleave_index; i < mine.size();
         i += interleave) {
      mine[kept++] = mine[i];
    }
    mine.resize(kept);
  }
  return std::unique_ptr<PairReader>(new LocalPairReader(
      this, snapshot, std::string(job), std::move(mine), PayloadFilesOf(job),
      options.readahead_pairs, options.read_threads));
}

absl::StatusOr<JobStats> LatentStore::Stats(absl::string_view job) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  JobStats stats;
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    if (it == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
    const JobState& st = it->second;
    stats.pairs = st.pairs;
    stats.tokens = st.tokens;
    stats.bytes = st.bytes;
    stats.consumed = st.consumed;
    stats.pending = st.pairs - st.consumed;
    stats.sealed_shards = st.head_shard;
    stats.stream_prefix_pairs = st.sealed_prefix_pairs + st.head_pairs;
  }
  auto list = ListCheckpointsLocked(job);
  if (list.ok()) {
    for (const CheckpointInfo& c : *list) {
      ++(IsTrainingCheckpoint(c.name) ? stats.checkpoints : stats.reports);
    }
  }
  return stats;
}

absl::Status LatentStore::DeleteJob(absl::string_view job) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
  }
  const std::string lp = sf::LengthPrefixed(job);
  rocksdb::WriteBatch batch;
  batch.DeleteRange(pairs_cf_, lp, sf::PrefixSuccessor(lp));
  batch.DeleteRange(checkpoints_cf_, lp, sf::PrefixSuccessor(lp));
  for (char tag :
       {sf::kTagIndex, sf::kTagManifest, sf::kTagUpload, sf::kTagSeal}) {
    const std::string p = JobKey(tag, job);
    batch.DeleteRange(meta_cf_, p, sf::PrefixSuccessor(p));
  }
  batch.Delete(meta_cf_, JobKey(sf::kTagCounters, job));
  batch.Delete(meta_cf_, JobKey(sf::kTagJob, job));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  LFT_RETURN_IF_ERROR(
      Checked("deleting job", [&] { return db_->Write(wo, &batch); }));
  {
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job);
    it->second.pending_gauge->Set(0);
    jobs_.erase(it);
  }
  DropPayloadFiles(job, /*keep_job=*/false);
  return CompactJobKeys(job, /*checkpoints=*/true);
}

absl::Status LatentStore::DeletePairs(absl::string_view job) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  absl::MutexLock write_lock(&write_mu_);
  JobState zeroed;
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
  }
  const std::string lp = sf::LengthPrefixed(job);
  const std::string index = JobKey(sf::kTagIndex, job);
  rocksdb::WriteBatch batch;
  batch.DeleteRange(pairs_cf_, lp, sf::PrefixSuccessor(lp));
  batch.DeleteRange(meta_cf_, index, sf::PrefixSuccessor(index));
  const std::string seals = JobKey(sf::kTagSeal, job);
  batch.DeleteRange(meta_cf_, seals, sf::PrefixSuccessor(seals));
  batch.Put(meta_cf_, JobKey(sf::kTagCounters, job), CountersValue(zeroed));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  LFT_RETURN_IF_ERROR(
      Checked("deleting pairs", [&] { return db_->Write(wo, &batch); }));
  {
    absl::MutexLock lock(&mu_);
    JobState& st = jobs_.find(job)->second;
    st.pairs = st.tokens = st.bytes = st.consumed = 0;
    st.sealed.clear();
    st.head_shard = 0;
    st.sealed_prefix_pairs = st.head_pairs = 0;
    st.pending_gauge->Set(0);
  }
  DropPayloadFiles(job, /*keep_job=*/true);
  return CompactJobKeys(job, /*checkpoints=*/false);
}

absl::Status LatentStore::CompactJobKeys(absl::string_view job,
                                         bool checkpoints) {
  const std::string lp = sf::LengthPrefixed(job);
  const std::string end = sf::PrefixSuccessor(lp);
  const rocksdb::Slice begin_slice(lp), end_slice(end);
  rocksdb::CompactRangeOptions co;
  // Rewrite the bottommost files too: that is where old pairs live.
  co.bottommost_level_compaction =
      rocksdb::BottommostLevelCompaction::kForceOptimized;
  // The memtable may still hold the range tombstone; flush it first so the
  // compaction sees it.
  LFT_RETURN_IF_ERROR(Flush());
  LFT_RETURN_IF_ERROR(
      FromRocks(db_->CompactRange(co, pairs_cf_, &begin_slice, &end_slice),
                "compacting deleted pairs"));
  if (checkpoints) {
    LFT_RETURN_IF_ERROR(FromRocks(
        db_->CompactRange(co, checkpoints_cf_, &begin_slice, &end_slice),
        "compacting deleted checkpoints"));
  }
  return absl::OkStatus();
}

absl::Status LatentStore::CheckJobGeneration(absl::string_view job,
                                             uint64_t generation) {
  absl::MutexLock lock(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end() || it->second.generation != generation) {
    return absl::AbortedError(absl::StrCat(
        "job '", job, "' was deleted while this write was pending"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Payload files

std::string LatentStore::PayloadDir(absl::string_view job) const {
  // "j-" keeps job ids such as "." and ".." ordinary names.
  return (std::filesystem::path(path_) / "payloads" / absl::StrCat("j-", job))
      .string();
}

absl::Status LatentStore::LoadPayloadFiles() {
  namespace fs = std::filesystem;
  const fs::path root = fs::path(path_) / "payloads";
  std::error_code ec;
  if (!fs::exists(root, ec)) return absl::OkStatus();
  std::map<std::string, JobPayloads, std::less<>> found;
  for (const fs::directory_entry& d : fs::directory_iterator(root, ec)) {
    const std::string name = d.path().filename().string();
    const std::string job = absl::StartsWith(name, "j-") ? name.substr(2) : "";
    bool known = false;
    {
      absl::MutexLock lock(&mu_);
      known = !job.empty() && jobs_.find(job) != jobs_.end();
    }
    if (!known) {
      // A job deleted (or never created) whose files a crash left behind;
      // failing to remove them costs disk space, not correctness.
      std::error_code removed;
      fs::remove_all(d.path(), removed);
      continue;
    }
    JobPayloads& p = found[job];
    for (const fs::directory_entry& f : fs::directory_iterator(d.path(), ec)) {
      const std::string file = f.path().filename().string();
      uint64_t id = 0;
      if (!absl::EndsWith(file, kPayloadFileSuffix) ||
          !absl::SimpleAtoi(
              file.substr(0, file.size() - std::strlen(kPayloadFileSuffix)),
              &id)) {
        continue;
      }
      LFT_ASSIGN_OR_RETURN(std::shared_ptr<PayloadFile> pf,
                           PayloadFile::OpenForReading(f.path().string(), id));
      p.files[id] = std::move(pf);
      p.next_id = std::max(p.next_id, id + 1);
    }
  }
  if (ec) {
    return absl::InternalError(absl::StrCat("listing payload files in ",
                                            root.string(), ": ", ec.message()));
  }
  absl::MutexLock lock(&payload_mu_);
  payloads_ = std::move(found);
  return absl::OkStatus();
}

absl::StatusOr<LatentStore::PayloadSlot> LatentStore::ReservePayload(
    absl::string_view job, uint64_t generation, uint64_t lane_index,
    uint64_t bytes) {
  absl::MutexLock lock(&payload_mu_);
  LFT_RETURN_IF_ERROR(CheckJobGeneration(job, generation));
  JobPayloads& p = payloads_[std::string(job)];
  if (p.lanes.empty())
    p.lanes.resize(std::max<uint32_t>(1, options_.payload_lanes));
  PayloadLane& lane = p.lanes[lane_index % p.lanes.size()];
  if (lane.open == nullptr || lane.open_bytes + bytes > kPayloadFileBytes) {
    const std::string dir = PayloadDir(job);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("creating payload directory ", dir, ": ", ec.message()));
    }
    const uint64_t id = p.next_id++;
    LFT_ASSIGN_OR_RETURN(
        std::shared_ptr<PayloadFile> f,
        PayloadFile::Create(
            (std::filesystem::path(dir) / absl::StrCat(id, kPayloadFileSuffix))
                .string(),
            id, options_.payload_bytes_per_writeback));
    p.files[id] = f;
    lane.open = std::move(f);
    lane.open_bytes = 0;
  }
  PayloadSlot slot{lane.open, lane.open_bytes};
  lane.open_bytes += bytes;
  return slot;
}

LatentStore::PayloadFiles LatentStore::PayloadFilesOf(absl::string_view job) {
  absl::MutexLock lock(&payload_mu_);
  auto it = payloads_.find(job);
  return it == payloads_.end() ? PayloadFiles() : it->second.files;
}

absl::Status LatentStore::SyncPayloadFiles(absl::string_view job) {
  // In parallel: the lanes' files are on one disk, and several syncs in
  // flight keep its queue deeper than one (as the disk ceiling's four
  // writers do).
  std::vector<std::shared_ptr<PayloadFile>> dirty;
  for (auto& [id, f] : PayloadFilesOf(job)) {
    if (f->dirty()) dirty.push_back(f);
  }
  std::vector<absl::Status> results(dirty.size());
  std::vector<std::thread> syncs;
  size_t i = 0;
  for (const auto& file : dirty) {
    PayloadFile* f = file.get();
    absl::Status* result = &results[i++];
    if (i == dirty.size()) {
      *result = f->SyncIfDirty();  // the last one on this thread
      continue;
    }
    try {
      syncs.emplace_back([f, result] { *result = f->SyncIfDirty(); });
    } catch (const std::system_error&) {  // no thread to be had: inline
      *result = f->SyncIfDirty();
    }
  }
  for (std::thread& t : syncs) t.join();
  for (const absl::Status& s : results) LFT_RETURN_IF_ERROR(s);
  return absl::OkStatus();
}

void LatentStore::DropPayloadFiles(absl::string_view job, bool keep_job) {
  absl::MutexLock lock(&payload_mu_);
  auto it = payloads_.find(job);
  if (it != payloads_.end()) {
    if (keep_job) {
      it->second.files.clear();
      it->second.lanes.clear();
    } else {
      payloads_.erase(it);
    }
  }
  // Unlinked under the lock, so no new file of this job appears in the
  // directory meanwhile; readers keep the files they hold open.
  std::error_code ec;
  std::filesystem::remove_all(PayloadDir(job), ec);
}

absl::Status LatentStore::Flush() {
  rocksdb::FlushOptions fo;
  fo.wait = true;
  return Checked("flushing", [&] {
    return db_->Flush(fo, {pairs_cf_, checkpoints_cf_, meta_cf_});
  });
}

absl::StatusOr<std::string> LatentStore::TestOnlyGetRaw(
    absl::string_view column_family, absl::string_view key) {
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  if (column_family == kPairsCf) cf = pairs_cf_;
  if (column_family == kCheckpointsCf) cf = checkpoints_cf_;
  if (column_family == kMetaCf) cf = meta_cf_;
  if (cf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no column family '", column_family, "'"));
  }
  std::string value;
  LFT_RETURN_IF_ERROR(
      FromRocks(db_->Get(rocksdb::ReadOptions(), cf,
                         rocksdb::Slice(key.data(), key.size()), &value),
                "test get"));
  return value;
}

absl::Status LatentStore::TestOnlyPutRaw(absl::string_view column_family,
                                         absl::string_view key,
                                         absl::string_view value) {
  rocksdb::ColumnFamilyHandle* cf = nullptr;
  if (column_family == kPairsCf) cf = pairs_cf_;
  if (column_family == kCheckpointsCf) cf = checkpoints_cf_;
  if (column_family == kMetaCf) cf = meta_cf_;
  if (cf == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no column family '", column_family, "'"));
  }
  return Checked("test put", [&] {
    return db_->Put(rocksdb::WriteOptions(), cf,
                    rocksdb::Slice(key.data(), key.size()),
                    rocksdb::Slice(value.data(), value.size()));
  });
}

// ---------------------------------------------------------------------------
// Checkpoints

uint64_t LatentStore::NewBlobId() {
  // Unique across restarts: wall-clock nanoseconds, forced monotonic here.
  const uint64_t now = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  absl::MutexLock lock(&mu_);
  blob_counter_ = std::max(blob_counter_ + 1, now);
  return blob_counter_;
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> LatentStore::StartCheckpoint(
    absl::string_view job, absl::string_view name,
    absl::string_view expected_sha256) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  LFT_RETURN_IF_ERROR(ValidateCheckpointName(name));
  if (!expected_sha256.empty() && expected_sha256.size() != 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected sha256 must be 64 hex digits, got ",
                     expected_sha256.size(), " characters"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' is not registered with the store"));
    }
  }
  const uint64_t blob = NewBlobId();
  std::string marker = JobKey(sf::kTagUpload, job);
  sf::PutBe64(&marker, blob);
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  LFT_RETURN_IF_ERROR(Checked("starting checkpoint", [&] {
    return db_->Put(wo, meta_cf_, marker, "");
  }));
  return std::unique_ptr<CheckpointWriter>(
      new CheckpointWriter(this, std::string(job), std::string(name),
                           absl::AsciiStrToLower(expected_sha256), blob));
}

absl::Status LatentStore::CommitCheckpoint(const std::string& job,
                                           const std::string& name,
                                           uint64_t blob_id, uint64_t bytes,
                                           uint64_t chunks,
                                           const std::string& sha256) {
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (jobs_.find(job) == jobs_.end()) {
      return absl::NotFoundError(
          absl::StrCat("job '", job, "' was deleted before checkpoint '", name,
                       "' was published"));
    }
  }
  rocksdb::WriteBatch batch;
  const std::string mkey = sf::ManifestKey(job, name);
  std::string old;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_cf_, mkey, &old);
  if (s.ok()) {
    auto m = ParseManifest(old);
    if (m.ok()) {
      const std::string from = BlobPrefix(job, m->blob_id);
      batch.DeleteRange(checkpoints_cf_, from, sf::PrefixSuccessor(from));
    }
  } else if (!s.IsNotFound()) {
    return FromRocks(s, "reading checkpoint manifest");
  }
  Manifest m;
  m.info.name = name;
  m.info.bytes = bytes;
  m.info.sha256 = sha256;
  m.info.created_unix_ms = absl::ToUnixMillis(absl::Now());
  m.blob_id = blob_id;
  m.chunks = chunks;
  batch.Put(meta_cf_, mkey, ManifestJson(m));
  std::string marker = JobKey(sf::kTagUpload, job);
  sf::PutBe64(&marker, blob_id);
  batch.Delete(meta_cf_, marker);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return Checked("publishing checkpoint",
                 [&] { return db_->Write(wo, &batch); });
}

absl::Status LatentStore::AbortCheckpoint(const std::string& job,
                                          uint64_t blob_id) {
  rocksdb::WriteBatch batch;
  const std::string from = BlobPrefix(job, blob_id);
  batch.DeleteRange(checkpoints_cf_, from, sf::PrefixSuccessor(from));
  std::string marker = JobKey(sf::kTagUpload, job);
  sf::PutBe64(&marker, blob_id);
  batch.Delete(meta_cf_, marker);
  return Checked("discarding checkpoint upload",
                 [&] { return db_->Write(rocksdb::WriteOptions(), &batch); });
}

absl::StatusOr<CheckpointInfo> LatentStore::PutCheckpoint(
    absl::string_view job, absl::string_view name, absl::string_view data,
    absl::string_view expected_sha256) {
  LFT_ASSIGN_OR_RETURN(auto writer,
                       StartCheckpoint(job, name, expected_sha256));
  LFT_RETURN_IF_ERROR(writer->Append(data));
  return writer->Commit();
}

absl::StatusOr<CheckpointInfo> LatentStore::ReadCheckpoint(
    absl::string_view job, absl::string_view name, uint64_t offset,
    const CheckpointSink& sink) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  LFT_RETURN_IF_ERROR(ValidateCheckpointName(name));
  const rocksdb::Snapshot* snapshot = db_->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~Release() { db->ReleaseSnapshot(s); }
  } release{db_, snapshot};
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string text;
  rocksdb::Status s = db_->Get(ro, meta_cf_, sf::ManifestKey(job, name), &text);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no checkpoint '", name, "'"));
  }
  LFT_RETURN_IF_ERROR(FromRocks(s, "reading checkpoint manifest"));
  LFT_ASSIGN_OR_RETURN(Manifest m, ParseManifest(text));
  if (offset > m.info.bytes) {
    return absl::OutOfRangeError(
        absl::StrCat("offset ", offset, " is past the end of checkpoint '",
                     name, "' of job '", job, "' (", m.info.bytes, " bytes)"));
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  uint64_t total = 0;
  rocksdb::PinnableSlice chunk;
  absl::Status status;
  for (uint64_t i = 0; i < m.chunks && status.ok(); ++i) {
    chunk.Reset();
    s = db_->Get(ro, checkpoints_cf_,
                 sf::ChunkKey(job, m.blob_id, static_cast<uint32_t>(i)),
                 &chunk);
    if (s.IsNotFound()) {
      status = absl::DataLossError(
          absl::StrCat("checkpoint '", name, "' of job '", job, "': chunk ", i,
                       " of ", m.chunks, " is missing"));
      break;
    }
    status = FromRocks(s, "reading checkpoint chunk");
    if (!status.ok()) break;
    EVP_DigestUpdate(ctx, chunk.data(), chunk.size());
    const uint64_t chunk_start = total;
    total += chunk.size();
    // Bytes before `offset` are hashed but not sent.
    if (total > offset) {
      const uint64_t skip = offset > chunk_start ? offset - chunk_start : 0;
      status = sink(
          m.info, absl::string_view(chunk.data() + skip, chunk.size() - skip));
    }
  }
  const std::string digest = HexDigest(ctx);
  EVP_MD_CTX_free(ctx);
  LFT_RETURN_IF_ERROR(status);
  if (total != m.info.bytes || digest != m.info.sha256) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint '", name, "' of job '", job, "' is corrupt: read ", total,
        " bytes with sha256 ", digest, ", manifest says ", m.info.bytes,
        " bytes with sha256 ", m.info.sha256));
  }
  return m.info;
}

absl::StatusOr<std::string> LatentStore::GetCheckpoint(absl::string_view job,
                                                       absl::string_view name) {
  std::string out;
  LFT_RETURN_IF_ERROR(
      ReadCheckpoint(job, name,
                     [&out](const CheckpointInfo& info, absl::string_view c) {
                       if (out.empty()) out.reserve(info.bytes);
                       out.append(c.data(), c.size());
                       return absl::OkStatus();
                     })
          .status());
  return out;
}

absl::StatusOr<std::vector<CheckpointInfo>> LatentStore::ListCheckpointsLocked(
    absl::string_view job) {
  std::vector<CheckpointInfo> out;
  const std::string prefix = JobKey(sf::kTagManifest, job);
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    LFT_ASSIGN_OR_RETURN(Manifest m,
                         ParseManifest(absl::string_view(it->value().data(),
                                                         it->value().size())));
    out.push_back(std::move(m.info));
  }
  LFT_RETURN_IF_ERROR(FromRocks(it->status(), "listing checkpoints"));
  std::sort(out.begin(), out.end(),
            [](const CheckpointInfo& a, const CheckpointInfo& b) {
              return std::tie(a.created_unix_ms, a.name) <
                     std::tie(b.created_unix_ms, b.name);
            });
  return out;
}

absl::StatusOr<std::vector<CheckpointInfo>> LatentStore::ListCheckpoints(
    absl::string_view job) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  LFT_RETURN_IF_ERROR(GetJobConfig(job).status());
  absl::MutexLock write_lock(&write_mu_);
  return ListCheckpointsLocked(job);
}

absl::Status LatentStore::DeleteCheckpointLocked(absl::string_view job,
                                                 absl::string_view name) {
  const std::string mkey = sf::ManifestKey(job, name);
  std::string text;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_cf_, mkey, &text);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("job '", job, "' has no checkpoint '", name, "'"));
  }
  LFT_RETURN_IF_ERROR(FromRocks(s, "reading checkpoint manifest"));
  rocksdb::WriteBatch batch;
  auto m = ParseManifest(text);
  if (m.ok()) {
    const std::string from = BlobPrefix(job, m->blob_id);
    batch.DeleteRange(checkpoints_cf_, from, sf::PrefixSuccessor(from));
  }
  batch.Delete(meta_cf_, mkey);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return Checked("deleting checkpoint", [&] { return db_->Write(wo, &batch); });
}

absl::Status LatentStore::DeleteCheckpoint(absl::string_view job,
                                           absl::string_view name) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  LFT_RETURN_IF_ERROR(ValidateCheckpointName(name));
  LFT_RETURN_IF_ERROR(GetJobConfig(job).status());
  absl::MutexLock write_lock(&write_mu_);
  return DeleteCheckpointLocked(job, name);
}

absl::StatusOr<uint64_t> LatentStore::KeepLastCheckpoints(absl::string_view job,
                                                          uint64_t keep) {
  LFT_RETURN_IF_ERROR(ValidateJobId(job));
  LFT_RETURN_IF_ERROR(GetJobConfig(job).status());
  absl::MutexLock write_lock(&write_mu_);
  LFT_ASSIGN_OR_RETURN(auto list, ListCheckpointsLocked(job));
  uint64_t deleted = 0;
  for (size_t i = 0; i + keep < list.size(); ++i) {
    LFT_RETURN_IF_ERROR(DeleteCheckpointLocked(job, list[i].name));
    ++deleted;
  }
  return deleted;
}

// ---------------------------------------------------------------------------
// CheckpointWriter

CheckpointWriter::CheckpointWriter(LatentStore* store, std::string job,
                                   std::string name,
                                   std::string expected_sha256,
                                   uint64_t blob_id)
    : store_(store),
      job_(std::move(job)),
      name_(std::move(name)),
      expected_sha256_(std::move(expected_sha256)),
      blob_id_(blob_id) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  sha_ctx_ = ctx;
}

CheckpointWriter::~CheckpointWriter() {
  if (!done_) store_->AbortCheckpoint(job_, blob_id_).IgnoreError();
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(sha_ctx_));
}

absl::Status CheckpointWriter::WriteChunk() {
  LFT_RETURN_IF_ERROR(
      store_->CheckFreeSpace(buffer_.size(), "writing checkpoint chunk"));
  rocksdb::WriteOptions wo;
  wo.disableWAL = store_->options_.disable_wal;
  // Chunks need no sync of their own: the publishing batch is synced, and
  // it reaches the WAL after them.
  LFT_RETURN_IF_ERROR(store_->Checked("writing checkpoint chunk", [&] {
    return store_->db_->Put(wo, store_->checkpoints_cf_,
                            sf::ChunkKey(job_, blob_id_, chunks_), buffer_);
  }));
  store_->checkpoint_bytes_written_.Increment(
      static_cast<double>(buffer_.size()));
  ++chunks_;
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Append(absl::string_view data) {
  if (done_)
    return absl::FailedPreconditionError("checkpoint writer is closed");
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(sha_ctx_), data.data(),
                   data.size());
  bytes_ += data.size();
  const size_t chunk = store_->options_.checkpoint_chunk_bytes;
  while (!data.empty()) {
    const size_t take = std::min(data.size(), chunk - buffer_.size());
    buffer_.append(data.data(), take);
    data.remove_prefix(take);
    if (buffer_.size() == chunk) LFT_RETURN_IF_ERROR(WriteChunk());
  }
  return absl::OkStatus();
}

absl::StatusOr<CheckpointInfo> CheckpointWriter::Commit() {
  if (done_)
    return absl::FailedPreconditionError("checkpoint writer is closed");
  if (!buffer_.empty()) LFT_RETURN_IF_ERROR(WriteChunk());
  const std::string digest = HexDigest(static_cast<EVP_MD_CTX*>(sha_ctx_));
  if (!expected_sha256_.empty() && digest != expected_sha256_) {
    return absl::DataLossError(
        absl::StrCat("checkpoint '", name_, "': received ", bytes_,
                     " bytes with sha256 ", digest, " but the sender declared ",
                     expected_sha256_, "; not published"));
  }
  LFT_RETURN_IF_ERROR(
      store_->CommitCheckpoint(job_, name_, blob_id_, bytes_, chunks_, digest));
  done_ = true;
  CheckpointInfo info;
  info.name = name_;
  info.bytes = bytes_;
  info.sha256 = digest;
  return info;
}

}  // namespace lft
