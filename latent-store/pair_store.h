// PairStore: what teacher workers, trainers, evaluators and the coordinator
// see of the latent store, whether it runs in-process (LatentStore, on a
// local RocksDB) or behind gRPC (RemotePairStore talking to lft-store).
//
// A job's pairs are addressed by (shard, sequence, chunk); writing the same
// address again overwrites, so a re-run shard never duplicates. Pairs are
// kept encoded (see common/tensor/tensor_codec.h); readers decode.
//
// Implementations are thread-safe. Readers returned by Scan are used by one
// thread each and must be destroyed before the store.
#ifndef LFT_LATENT_STORE_PAIR_STORE_H_
#define LFT_LATENT_STORE_PAIR_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/tensor/tensor_codec.h"

namespace lft {

// One packed sequence (or one chunk of it): teacher hidden states x0 = h_m
// and x1 = h_n, each [tokens, hidden] encoded with `codec`, and the tokens.
struct LatentPairRecord {
  uint32_t shard = 0;
  uint64_t sequence = 0;
  uint32_t chunk = 0;
  uint32_t tokens = 0;
  uint32_t hidden = 0;
  TensorCodec codec = TensorCodec::kBF16;
  std::string x0;                  // EncodedBytes(codec, tokens, hidden) bytes
  std::string x1;                  // same size as x0
  std::vector<int32_t> token_ids;  // empty, or `tokens` ids
};

// What a job's pairs must look like; fixed when the job is created.
struct JobConfig {
  uint32_t hidden = 0;                     // width of every x0/x1 row
  TensorCodec codec = TensorCodec::kBF16;  // encoding of every payload
  // Streaming mode: PutPairs blocks while the job holds more than this many
  // unconsumed (written minus acknowledged) pairs. 0 = unbounded (cached
  // mode: every pair is kept for several epochs).
  uint64_t max_pending_pairs = 0;
};

struct JobStats {
  uint64_t pairs = 0;     // distinct (shard, sequence, chunk) stored
  uint64_t tokens = 0;    // sum of their tokens
  uint64_t bytes = 0;     // sum of their stored record sizes
  uint64_t consumed = 0;  // pairs acknowledged by readers (AckConsumed)
  // pairs - consumed: pairs no reader has consumed yet, in streaming and
  // cached mode alike (trainers acknowledge the first epoch's reads).
  uint64_t pending = 0;
  // Trainer checkpoints (IsTrainingCheckpoint names, step-N) ...
  uint64_t checkpoints = 0;
  // ... and every other blob: the evaluator's reports and plots.
  uint64_t reports = 0;
  // Streaming (see SealShard): shards 0..sealed_shards-1 are sealed; shard
  // sealed_shards is the head shard.
  uint32_t sealed_shards = 0;
  // The final prefix of the job's key order: every pair of the sealed
  // shards, then every pair of the head shard. Teachers of streaming jobs
  // write a shard's sequences in order, so no later write lands inside it:
  // pairs [0, stream_prefix_pairs) of the key order keep their positions.
  uint64_t stream_prefix_pairs = 0;
};

// How a trainer rank reads its share of a job.
//
// The job's pairs, in key order, are cut into blocks of `block_pairs`
// consecutive pairs. With shuffle, an epoch's block order is a permutation
// drawn from (seed, epoch) alone; without, it is key order. Rank `partition`
// of `partitions` takes blocks start_block + partition, start_block +
// partition + partitions, ... of that order. So the W partitions are
// disjoint and together complete, and the order does not depend on W: to
// resize from W to W' after every rank has consumed b blocks, restart all
// ranks with start_block += b * W; nothing is dropped or repeated.
struct ScanOptions {
  uint32_t partition = 0;
  uint32_t partitions = 1;
  bool shuffle = false;
  uint64_t seed = 0;
  uint64_t epoch = 0;
  uint64_t start_block = 0;  // global blocks of the epoch order to skip
  uint64_t skip_pairs = 0;   // then pairs of this partition's order to skip
  uint32_t block_pairs = 64;
  // Only pairs [range_begin, range_begin + range_pairs) of the key order
  // (range_pairs 0: to the end) take part; blocks, shuffle and partitions
  // apply within the range as if it were the whole job. A streaming
  // trainer reads windows of the final prefix (JobStats) this way.
  uint64_t range_begin = 0;
  uint64_t range_pairs = 0;
  // Only pairs i of the partition's order (after skip_pairs) with
  // i % interleave_count == interleave_index; 0 is taken as 1 (all pairs).
  // RemotePairStore reads one partition over several ScanPairs streams
  // this way (RemotePairStoreOptions::scan_streams) and merges them back
  // into the partition's order.
  uint32_t interleave_index = 0;
  uint32_t interleave_count = 1;
  // Read-ahead: background threads fetch up to `readahead_pairs` pairs
  // ahead of the consumer (memory: that many decoded pairs), with up to
  // `read_threads` reads in flight. Order is unaffected.
  uint32_t readahead_pairs = 16;
  uint32_t read_threads = 4;
};

// Reads one partition. Not thread-safe: one consumer thread per reader.
class PairReader {
 public:
  virtual ~PairReader() = default;
  // On success fills *pair and returns true; returns false (and leaves
  // *pair unchanged) once the partition is exhausted. DataLoss if a stored
  // record fails its crc32c or header check (the message names the key);
  // the reader is finished after any error.
  virtual absl::StatusOr<bool> Next(LatentPairRecord* pair) = 0;
  // Makes a Next in flight on another thread return soon (with an error),
  // and every later one: the one call that may come from another thread.
  // Readers whose Next can block on something outside the process (a
  // remote stream) implement it; the default does nothing. A reader that
  // reads another on a thread of its own (PrefetchingPairReader) calls it
  // before it joins that thread.
  virtual void Cancel() {}
};

struct CheckpointInfo {
  std::string name;
  uint64_t bytes = 0;
  std::string sha256;  // lowercase hex
  int64_t created_unix_ms = 0;
};

// Receives a checkpoint's bytes in order; `info` describes the whole blob.
// An error stops the read and is returned by ReadCheckpoint.
using CheckpointSink = std::function<absl::Status(const CheckpointInfo& info,
                                                  absl::string_view chunk)>;

class PairStore {
 public:
  virtual ~PairStore() = default;

  // Registers `job` with `config`. OK if it exists with the same hidden and
  // codec (max_pending_pairs is then updated). InvalidArgument for a bad
  // id (1..128 of [A-Za-z0-9._-]) or hidden == 0; AlreadyExists if it
  // exists with another hidden or codec.
  virtual absl::Status CreateJob(absl::string_view job,
                                 const JobConfig& config) = 0;

  // Writes `pairs` atomically (all or none); OK means every pair is
  // acknowledged (durable once SyncPairs returns, below). In streaming
  // mode blocks while the job's pending pairs would exceed its bound
  // (a batch is admitted when pending + batch <= bound or pending == 0);
  // DeadlineExceeded if `deadline` passes first, with nothing written.
  // NotFound for an unknown job; InvalidArgument (naming the pair and field)
  // for a pair whose hidden or codec differ from the job's, whose payload
  // sizes disagree with its shape, or whose token_ids are neither empty nor
  // `tokens` long. Nothing is written on error.
  virtual absl::Status PutPairs(absl::string_view job,
                                absl::Span<const LatentPairRecord> pairs,
                                absl::Time deadline) = 0;

  // Durability of pair writes (docs/store.md, "Write path"). By default a
  // store keeps pair payloads out of its write-ahead log, so that they are
  // written to disk once: an acknowledged PutPairs survives a crash of the
  // writer but not yet of the store process. SyncPairs is the commit point:
  // when it returns OK every pair that PutPairs acknowledged before the call
  // is on disk (fsync'd) and survives kill -9 of every process and a power
  // loss. `session` is what WriteSession returned before the first of those
  // writes; if the store restarted since (so acknowledged pairs may be
  // gone), Aborted and nothing is claimed: write them again and sync anew.
  // NotFound for an unknown job; Unavailable if the store cannot be reached.
  virtual absl::StatusOr<std::string> WriteSession() = 0;
  virtual absl::Status SyncPairs(absl::string_view job,
                                 absl::string_view session) = 0;

  // Records that readers consumed `pairs` more pairs of `job`, releasing
  // writers blocked on back-pressure. Consumed never exceeds written.
  // NotFound for an unknown job.
  virtual absl::Status AckConsumed(absl::string_view job, uint64_t pairs) = 0;

  // Streaming mode: marks `shard` of `job` complete with `pairs` pairs, once
  // they are written and synced (a teacher calls it between SyncPairs and
  // completing its task). Sealed shards from 0 up, plus the pairs present
  // in the first unsealed (head) shard, form the job's final key-order
  // prefix (JobStats::stream_prefix_pairs), in which streaming trainers
  // agree on every step's pairs whatever the arrival order. Back-pressure
  // lets a batch of the head shard through while that prefix holds fewer
  // unconsumed pairs than the bound, so readers waiting for it never wait
  // on writers blocked by other shards. Durable when OK; idempotent (a
  // re-run shard seals again with the same count). NotFound for an unknown
  // job; FailedPrecondition (naming both counts) if the store holds another
  // number of pairs for the shard, with nothing changed.
  virtual absl::Status SealShard(absl::string_view job, uint32_t shard,
                                 uint64_t pairs) = 0;

  // A reader over one partition of the job's pairs as of this call (later
  // writes are not seen). NotFound for an unknown job; InvalidArgument if
  // partition >= partitions, partitions == 0 or block_pairs == 0. A range
  // that reaches past the stored pairs is cut at their end.
  virtual absl::StatusOr<std::unique_ptr<PairReader>> Scan(
      absl::string_view job, const ScanOptions& options) = 0;

  // NotFound for an unknown job.
  virtual absl::StatusOr<JobStats> Stats(absl::string_view job) = 0;

  // Stores `data` as checkpoint `name` of `job`, replacing any checkpoint of
  // that name. Published atomically: until OK returns, List does not show
  // it and Get returns the previous version (or NotFound). If
  // `expected_sha256` is non-empty and differs from the data's digest,
  // DataLoss and nothing is published. NotFound for an unknown job;
  // InvalidArgument for a bad name (1..200 of [A-Za-z0-9._-]).
  virtual absl::StatusOr<CheckpointInfo> PutCheckpoint(
      absl::string_view job, absl::string_view name, absl::string_view data,
      absl::string_view expected_sha256) = 0;
  // The checkpoint's bytes, verified against its recorded sha256 (DataLoss
  // on mismatch). NotFound if the job or checkpoint does not exist.
  virtual absl::StatusOr<std::string> GetCheckpoint(absl::string_view job,
                                                    absl::string_view name) = 0;
  // Streams the checkpoint's bytes from `offset` on to `sink`, in order and
  // in pieces of at most a few MiB. The sha256 of the whole blob (the bytes
  // before `offset` too) is checked where the blob is stored: DataLoss after
  // the last piece on mismatch, and the sink has then seen bad bytes.
  // OutOfRange if offset exceeds the blob's size (offset == size sends
  // nothing and returns the info). NotFound if the job or checkpoint does
  // not exist.
  virtual absl::StatusOr<CheckpointInfo> ReadCheckpoint(
      absl::string_view job, absl::string_view name, uint64_t offset,
      const CheckpointSink& sink) = 0;
  // Published checkpoints, oldest first (ties by name).
  virtual absl::StatusOr<std::vector<CheckpointInfo>> ListCheckpoints(
      absl::string_view job) = 0;
  // NotFound if it does not exist.
  virtual absl::Status DeleteCheckpoint(absl::string_view job,
                                        absl::string_view name) = 0;
  // Deletes all but the newest `keep` checkpoints; returns how many went.
  virtual absl::StatusOr<uint64_t> KeepLastCheckpoints(absl::string_view job,
                                                       uint64_t keep) = 0;

  // Deletes the job, its pairs and its checkpoints, and returns their disk
  // space (the key ranges are compacted before OK). Writers blocked on it
  // return Aborted. NotFound for an unknown job.
  virtual absl::Status DeleteJob(absl::string_view job) = 0;

  // Deletes the job's pairs and returns their disk space, keeping the job,
  // its checkpoints and reports: pair retention after a job ends. Stats then
  // shows 0 pairs. Idempotent; NotFound for an unknown job.
  virtual absl::Status DeletePairs(absl::string_view job) = 0;
};

// Validation shared by every implementation (InvalidArgument with the rule).
absl::Status ValidateJobId(absl::string_view job);
absl::Status ValidateCheckpointName(absl::string_view name);
// Checks one pair against the job's config; `index` names it in messages.
absl::Status ValidatePair(const LatentPairRecord& pair, const JobConfig& config,
                          size_t index);

}  // namespace lft

#endif  // LFT_LATENT_STORE_PAIR_STORE_H_
