// LatentStore: the PairStore on a local RocksDB database (embedded mode,
// and what lft-store serves over gRPC). Layout in docs/store.md.
//
// Column families: "pairs" (pair records, optionally in BlobDB blob files),
// "checkpoints" (checkpoint chunks) and "meta" (job configs, counters, the
// per-pair index that scans list without reading payloads, checkpoint
// manifests). Thread-safe.
#ifndef LFT_LATENT_STORE_LATENT_STORE_H_
#define LFT_LATENT_STORE_LATENT_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/base/prometheus_metrics.h"
#include "latent-store/pair_store.h"
#include "latent-store/payload_file.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Status;
struct WriteOptions;
}  // namespace rocksdb

namespace lft {

struct LatentStoreOptions {
  bool create_if_missing = true;
  // Pairs CF: keep values >= min_blob_size in blob files, so compaction
  // moves keys, not megabytes (docs/store.md).
  bool enable_blob_files = true;
  uint64_t min_blob_size = 64 * 1024;
  // Pair payloads skip the write-ahead log by default, so they reach the
  // disk once (in blob files, at memtable flush) instead of twice; SyncPairs
  // flushes and fsyncs them, which is the teacher's commit point before it
  // completes a task (docs/store.md, "Write path"). The pair index and job
  // counters share the pairs' batches and durability; with atomic flush the
  // three column families reach the disk together, so after a crash the
  // index, counters and payloads always agree. pairs_in_wal restores the
  // older mode: each PutPairs batch in the WAL (fsync'd with `sync`), so an
  // acknowledged write survives a store kill without SyncPairs, at half the
  // write bandwidth.
  bool pairs_in_wal = false;
  // Pair payloads (x0, x1) go to append-only payload files of their own
  // (<dir>/payloads/j-<job>/<id>.lftp, payload_file.h), written once with
  // pwrite by the writers in parallel and fdatasync'd by SyncPairs before
  // the index; RocksDB keeps each record's header, token ids and a
  // reference. Off (or with pairs_in_wal): payloads inside RocksDB (blob
  // files at memtable flush). Records of both kinds are read either way.
  bool payload_files = true;
  // A payload file asks the kernel to start writing its dirty pages back
  // every this many bytes (0: only SyncPairs writes them), so the disk
  // writes while the teacher computes and SyncPairs finds little left.
  uint64_t payload_bytes_per_writeback = 32ull << 20;
  // Payload files a job appends to at once, one per lane; each PutPairs
  // call writes its batch into the next lane's file. One file written back
  // by one stream reached ~1.5 GB/s on the H200 host's disk, four ~2.2.
  uint32_t payload_lanes = 4;
  // Job configs, checkpoints and deletions always go through the WAL; fsync
  // per write batch with sync. disable_wal drops the WAL for everything
  // (bulk loads, benchmarks): writes are durable only after Flush().
  bool disable_wal = false;
  bool sync = true;
  // Memtable size of the pairs column family; up to six are kept, so that
  // flushes (one per full memtable, in parallel) overlap new writes.
  uint64_t write_buffer_bytes = 256ull << 20;
  // Checkpoint blobs are stored in chunks of this size.
  uint64_t checkpoint_chunk_bytes = 4ull << 20;
  // Writes of pairs and checkpoints are refused (ResourceExhausted naming
  // the directory) unless the disk keeps this much free beyond the write,
  // so that RocksDB itself does not run out of space (an ENOSPC inside a
  // flush of blob files left RocksDB 7.8 unrecoverable until a restart).
  // It must cover the unflushed memtables (up to six of
  // write_buffer_bytes) and a compaction's output. Deletions are always
  // admitted.
  uint64_t min_free_disk_bytes = 2ull << 30;
  // Optional; lft_store_* metrics are registered here. Must outlive the store.
  MetricsRegistry* metrics = nullptr;
};

class CheckpointWriter;

class LatentStore : public PairStore {
 public:
  // Opens (or with create_if_missing, creates) the store in directory
  // `path`, then removes chunks of checkpoint uploads that a crash left
  // unpublished. InvalidArgument if the directory holds no store and
  // create_if_missing is false; FailedPrecondition if another process has
  // it open; DataLoss if RocksDB reports corruption.
  static absl::StatusOr<std::unique_ptr<LatentStore>> Open(
      const std::string& path, const LatentStoreOptions& options);
  ~LatentStore() override;
  LatentStore(const LatentStore&) = delete;
  LatentStore& operator=(const LatentStore&) = delete;

  // PairStore (contracts there).
  absl::Status CreateJob(absl::string_view job,
                         const JobConfig& config) override;
  absl::Status PutPairs(absl::string_view job,
                        absl::Span<const LatentPairRecord> pairs,
                        absl::Time deadline) override;
  absl::StatusOr<std::string> WriteSession() override;
  absl::Status SyncPairs(absl::string_view job,
                         absl::string_view session) override;
  absl::Status AckConsumed(absl::string_view job, uint64_t pairs) override;
  absl::Status SealShard(absl::string_view job, uint32_t shard,
                         uint64_t pairs) override;
  absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) override;
  absl::StatusOr<JobStats> Stats(absl::string_view job) override;
  absl::StatusOr<CheckpointInfo> PutCheckpoint(
      absl::string_view job, absl::string_view name, absl::string_view data,
      absl::string_view expected_sha256) override;
  absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                            absl::string_view name) override;
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) override;
  absl::Status DeleteCheckpoint(absl::string_view job,
                                absl::string_view name) override;
  absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                               uint64_t keep) override;
  absl::Status DeleteJob(absl::string_view job) override;
  absl::Status DeletePairs(absl::string_view job) override;

  // The job's config. NotFound for an unknown job.
  absl::StatusOr<JobConfig> GetJobConfig(absl::string_view job);
  // Registered job ids, sorted.
  std::vector<std::string> ListJobs();

  // Streaming checkpoint upload: Append bytes, then Commit to publish (same
  // atomicity and sha256 rules as PutCheckpoint). Dropping the writer
  // without Commit discards what it wrote. NotFound for an unknown job.
  absl::StatusOr<std::unique_ptr<CheckpointWriter>> StartCheckpoint(
      absl::string_view job, absl::string_view name,
      absl::string_view expected_sha256);
  // Streams a checkpoint to `sink` chunk by chunk, then verifies the sha256
  // of all the bytes: DataLoss on mismatch (the sink has then seen bad
  // bytes and must discard them). A sink error stops the read and is
  // returned. NotFound if the job or checkpoint does not exist.
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(absl::string_view job,
                                                absl::string_view name,
                                                const CheckpointSink& sink) {
    return ReadCheckpoint(job, name, 0, sink);
  }
  // From `offset` on (PairStore::ReadCheckpoint); the digest still covers
  // every byte.
  absl::StatusOr<CheckpointInfo> ReadCheckpoint(
      absl::string_view job, absl::string_view name, uint64_t offset,
      const CheckpointSink& sink) override;

  // Flushes memtables to SST/blob files (makes disable_wal writes durable).
  absl::Status Flush();

  // Test hook: writes a raw key/value into column family "pairs",
  // "checkpoints" or "meta", bypassing encoding, so tests can check that
  // corruption is detected. InvalidArgument for another name.
  absl::Status TestOnlyPutRaw(absl::string_view column_family,
                              absl::string_view key, absl::string_view value);
  // Test hook: reads a raw value (NotFound if absent).
  absl::StatusOr<std::string> TestOnlyGetRaw(absl::string_view column_family,
                                             absl::string_view key);

 private:
  friend class CheckpointWriter;
  friend class LocalPairReader;

  struct JobState {
    JobConfig config;
    uint64_t pairs = 0;
    uint64_t tokens = 0;
    uint64_t bytes = 0;
    uint64_t consumed = 0;
    uint64_t reserved = 0;    // admitted by back-pressure, not yet written
    uint64_t generation = 0;  // bumped by DeleteJob, so waiters notice
    prometheus::Gauge* pending_gauge = nullptr;
    // Streaming (SealShard): pairs per sealed shard; the head shard (the
    // first unsealed one); the pairs of the shards before it, and the pairs
    // present in it. The final prefix is sealed_prefix_pairs + head_pairs.
    std::map<uint32_t, uint64_t> sealed;
    uint32_t head_shard = 0;
    uint64_t sealed_prefix_pairs = 0;
    uint64_t head_pairs = 0;
  };

  // A job's payload files: those found at Open (read only) and those this
  // process created. Each lane appends to its own open file until it holds
  // kPayloadFileBytes, so concurrent PutPairs calls write, and their
  // writebacks go to the disk, in parallel streams.
  struct PayloadLane {
    std::shared_ptr<PayloadFile> open;
    uint64_t open_bytes = 0;
  };
  struct JobPayloads {
    std::map<uint64_t, std::shared_ptr<PayloadFile>> files;
    std::vector<PayloadLane> lanes;
    uint64_t next_id = 0;
  };
  struct PayloadSlot {
    std::shared_ptr<PayloadFile> file;
    uint64_t offset = 0;
  };
  using PayloadFiles = std::map<uint64_t, std::shared_ptr<PayloadFile>>;

  LatentStore(const std::string& path, const LatentStoreOptions& options,
              rocksdb::DB* db,
              std::vector<rocksdb::ColumnFamilyHandle*> handles);
  std::string PayloadDir(absl::string_view job) const;
  // Finds every job's payload files; removes those of jobs the store no
  // longer has (a crash between a deletion's index write and its unlink).
  absl::Status LoadPayloadFiles();
  // `bytes` bytes of the open payload file of the job's lane `lane` (taken
  // modulo the lanes), starting a new file when it is full. Aborted if the
  // job (this generation of it) is gone.
  absl::StatusOr<PayloadSlot> ReservePayload(absl::string_view job,
                                             uint64_t generation, uint64_t lane,
                                             uint64_t bytes);
  PayloadFiles PayloadFilesOf(absl::string_view job);
  // Aborted unless `job` still exists as the generation a pending write
  // started on (not deleted, nor deleted and created again, since).
  absl::Status CheckJobGeneration(absl::string_view job, uint64_t generation)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Syncs every payload file of `job` written since its last sync.
  absl::Status SyncPayloadFiles(absl::string_view job);
  // Forgets the job's payload files and unlinks them (open readers keep
  // theirs); `keep_job` keeps numbering new files after the old ones.
  void DropPayloadFiles(absl::string_view job, bool keep_job);
  absl::Status LoadState();
  // Pairs of `job` stored for `shard`, counted from the index.
  absl::StatusOr<uint64_t> CountShardPairs(absl::string_view job,
                                           uint32_t shard);
  // Moves st->head_shard past the sealed shards and counts the head's
  // pairs (one index scan of one shard). Called with write_mu_ held (no pair
  // write runs meanwhile) on a state not yet published under mu_.
  absl::Status AdvanceHead(absl::string_view job, JobState* st);
  // Compacts the job's key ranges after a range deletion, so that the SST
  // and blob files holding them are rewritten or dropped.
  absl::Status CompactJobKeys(absl::string_view job, bool checkpoints);
  absl::Status CollectAbandonedUploads();
  prometheus::Gauge* PendingGauge(const std::string& job);
  static std::string CountersValue(const JobState& state);
  absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpointsLocked(
      absl::string_view job);
  absl::Status DeleteCheckpointLocked(absl::string_view job,
                                      absl::string_view name)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::Status CommitCheckpoint(const std::string& job, const std::string& name,
                                uint64_t blob_id, uint64_t bytes,
                                uint64_t chunks, const std::string& sha256);
  absl::Status AbortCheckpoint(const std::string& job, uint64_t blob_id);
  uint64_t NewBlobId();
  // How pair batches (and the counters row they share) are written.
  rocksdb::WriteOptions PairWriteOptions() const;
  // Runs one RocksDB write (`op`), first resuming the database if an
  // earlier write found the disk full. A full disk is ResourceExhausted
  // naming the store's directory; RocksDB then refuses writes until
  // DB::Resume() succeeds (space returned), which the next write tries, so
  // writes resume by themselves and reads are served meanwhile.
  absl::Status Checked(absl::string_view what,
                       const std::function<rocksdb::Status()>& op);
  // ResourceExhausted naming the directory when writing `bytes` more would
  // leave less than min_free_disk_bytes free once memtables are flushed.
  absl::Status CheckFreeSpace(uint64_t bytes, absl::string_view what);

  const std::string path_;
  const LatentStoreOptions options_;
  const bool payload_files_;  // options_.payload_files && !pairs_in_wal
  // Differs on every Open (WriteSession): a writer that sees it change
  // knows that unsynced pairs may be gone.
  const std::string write_session_;
  rocksdb::DB* const db_;
  const std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* const pairs_cf_;
  rocksdb::ColumnFamilyHandle* const checkpoints_cf_;
  rocksdb::ColumnFamilyHandle* const meta_cf_;
  // Metrics (detached no-op counters when no registry is given).
  std::unique_ptr<MetricsRegistry> own_metrics_;
  MetricsRegistry* const metrics_;
  prometheus::Counter& written_bytes_;
  prometheus::Counter& pairs_written_;
  prometheus::Counter& read_bytes_;
  prometheus::Counter& pairs_read_;
  prometheus::Counter& backpressure_seconds_;
  prometheus::Counter& checkpoint_bytes_written_;
  prometheus::Counter& sync_seconds_;
  // Set by a write that failed for lack of space; cleared by DB::Resume().
  std::atomic<bool> out_of_space_{false};
  // Round-robin lane of the next PutPairs call (payload files).
  std::atomic<uint64_t> next_payload_lane_{0};
  absl::Mutex resume_mu_;  // one DB::Resume() at a time

  // Serializes writers: counters are read-modify-written and each pair's
  // index entry is checked before its batch is built. Never held while
  // waiting on back-pressure.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  // State below is protected by mu_.
  absl::Mutex mu_;
  std::map<std::string, JobState, std::less<>> jobs_ ABSL_GUARDED_BY(mu_);
  uint64_t blob_counter_ ABSL_GUARDED_BY(mu_) = 0;

  // Taken after write_mu_ and before mu_ (ReservePayload checks the job).
  absl::Mutex payload_mu_ ABSL_ACQUIRED_AFTER(write_mu_)
      ABSL_ACQUIRED_BEFORE(mu_);
  std::map<std::string, JobPayloads, std::less<>> payloads_
      ABSL_GUARDED_BY(payload_mu_);
};

// See LatentStore::StartCheckpoint. Not thread-safe.
class CheckpointWriter {
 public:
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Adds bytes; full chunks are written as they fill. Errors are RocksDB's
  // write errors; the writer is unusable afterwards.
  absl::Status Append(absl::string_view data);
  // Writes the last chunk, checks the digest (DataLoss if it differs from
  // the expected one; nothing is published) and publishes the manifest in
  // one write batch.
  absl::StatusOr<CheckpointInfo> Commit();
  uint64_t bytes() const { return bytes_; }
  // Test hook: makes the destructor leave the chunks and upload marker in
  // place, as a crash would.
  void TestOnlyAbandon() { done_ = true; }

 private:
  friend class LatentStore;
  CheckpointWriter(LatentStore* store, std::string job, std::string name,
                   std::string expected_sha256, uint64_t blob_id);
  absl::Status WriteChunk();

  LatentStore* const store_;
  const std::string job_;
  const std::string name_;
  const std::string expected_sha256_;
  const uint64_t blob_id_;
  void* sha_ctx_ = nullptr;  // EVP_MD_CTX*
  std::string buffer_;
  uint64_t bytes_ = 0;
  uint32_t chunks_ = 0;
  bool done_ = false;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_LATENT_STORE_H_
