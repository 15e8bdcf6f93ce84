// TeacherExtractionRunner: the teacher worker's engine (issue 6). For one
// ExtractionTask it reads the shard's documents as token ids, packs them
// into sequences, runs the frozen GPT-NeoX teacher up to layer n and writes
// one latent pair (x0 = hidden_states[m], x1 = hidden_states[n], the token
// ids) per sequence into the job's store.
//
// Packing: documents in shard order, each followed by <|endoftext|>, cut
// into sequences of exactly spec.sequence_length tokens; the last partial
// sequence of a shard is DROPPED (never padded), so every stored pair has
// sequence_length real tokens and no mask. Keys are (shard_index, sequence
// index within the shard, chunk 0); the packing depends only on the shard,
// so re-running a shard (after a crash or a lease loss) overwrites the same
// keys with the same values and never duplicates.
//
// No torch type appears in this header; the .cc catches every torch
// exception (GuardTorch).
#ifndef LFT_WORKER_TEACHER_TEACHER_EXTRACTION_RUNNER_H_
#define LFT_WORKER_TEACHER_TEACHER_EXTRACTION_RUNNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/prometheus_metrics.h"
#include "latent-store/pair_store.h"
#include "latent-store/pair_store_pool.h"
#include "latent-store/remote_pair_store.h"
#include "worker/agent/task_runner.h"
#include "worker/model/teacher_loader.h"

namespace lft {

class GptNeoX;

struct TeacherRunnerOptions {
  // "cpu" or "cuda" (or "cuda:N").
  std::string device = "cpu";
  // Directory of the embedded LatentStore used when a task's store_address
  // is empty. Empty: such tasks fail with FailedPrecondition.
  std::string store_db;
  // Shared connections (embedded and remote, with credentials); when set,
  // store_db is ignored. Must outlive the runner.
  PairStorePool* stores = nullptr;
  // Token and CA for remote stores when the runner opens its own pool.
  StoreClientCredentials store_credentials;
  // Sequences per teacher forward (and per PutPairs batch).
  int64_t batch_sequences = 8;
  // PutPairs calls in flight at once (each on its own thread and, for a
  // remote store, its own stream); encoded batches waiting for a writer
  // block the GPU stage beyond one more.
  int64_t store_writers = 4;
  // How long a task waits for a store that is unreachable (each call is
  // retried with exponential backoff from 0.2 s to 10 s, with jitter;
  // latent-store/retrying_pair_store.h) or keeps redoing its shard after the
  // store restarted, before it fails naming the store and its error.
  absl::Duration store_unavailable_wait = absl::Minutes(5);
  // Optional: counters lft_teacher_tokens_total and
  // lft_teacher_pairs_written_total and gauge lft_teacher_tokens_per_second,
  // labelled job and role="teacher". Must outlive the runner.
  MetricsRegistry* metrics = nullptr;
  // How long one PutPairs may take, back-pressure included. Cancellation is
  // not seen while a PutPairs blocks (RemotePairStore uses this as the gRPC
  // deadline of the whole transfer, so it cannot be cut into short tries).
  absl::Duration put_timeout = absl::Minutes(10);
  // Tests only: an interruptible pause after every batch, so that a test
  // can kill a worker in the middle of a shard.
  absl::Duration pause_per_batch = absl::ZeroDuration();
};

class TeacherExtractionRunner : public TaskRunner {
 public:
  explicit TeacherExtractionRunner(TeacherRunnerOptions options);
  ~TeacherExtractionRunner() override;

  // Runs one extraction task (other payloads: InvalidArgument) and returns
  // once its pairs are durable (SyncPairs), with pairs_written = sequences
  // packed from the shard. Errors: NotFound /
  // InvalidArgument from loading the teacher or its tokenizer.json (message
  // names the file), reader errors naming the corpus file and shard,
  // store errors naming the job and shard, Cancelled when the task's
  // cancellation token was set (checked between batches). A store that is
  // unreachable or restarted mid-task is waited for (store_unavailable_wait)
  // and the shard redone; its error is returned only after that.
  absl::StatusOr<TaskResult> Run(const lft::v1::Task& task,
                                 TaskContext* context) override;

  // Teachers loaded so far (keyed by path and dtype); for tests.
  size_t cached_teachers() const;

 private:
  // One pass over the shard: pipeline, then SyncPairs. Sets
  // *store_restarted when SyncPairs found that the store restarted since
  // the shard's first write (the shard must be redone).
  absl::StatusOr<TaskResult> ExtractShard(const lft::v1::Task& task,
                                          const LoadedTeacher& teacher,
                                          TensorCodec codec, PairStore* store,
                                          TaskContext* context,
                                          bool* store_restarted);

  const TeacherRunnerOptions options_;
  // options_.stores, or a pool of its own over options_.store_db.
  std::unique_ptr<PairStorePool> owned_stores_;
  PairStorePool* const stores_;
  TeacherCache teachers_;
};

}  // namespace lft

#endif  // LFT_WORKER_TEACHER_TEACHER_EXTRACTION_RUNNER_H_
