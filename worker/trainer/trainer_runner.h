// TrainerRunner: one data-parallel rank of a job's trainer group, as a
// TaskRunner under the WorkerAgent. For a TrainingTask it
//   1. forms the group: rank 0 creates the communicator id (a Gloo
//      rendezvous address on CPUs, an NCCL unique id on GPUs), the
//      coordinator's Rendezvous relays it, every rank joins;
//   2. resumes from the checkpoint the coordinator names in the rendezvous
//      response (the job's latest; every rank loads the same one);
//   3. each step reads its B / W pairs (B = global_batch_sequences) from
//      its strided slice of the store's shuffled pair order (ScanOptions
//      with block_pairs 1, so the global batch of a step is the same set of
//      pairs for any W), computes gradients, sums gradients and loss with
//      one all-reduce, clips, takes an AdamW step at the warm-up + cosine
//      learning rate, and every checkpoint_every_steps steps (and at the
//      end) rank 0 stores checkpoint "step-<10 digits>" atomically.
// Streaming mode (training.streaming), any W: training starts while
// teachers still write. The first epoch is the stream: the job's pairs in
// key order (shard, sequence), cut into windows of streaming_buffer_pairs
// (whole global batches), each shuffled by (seed, window); a rank waits
// (cancellably) until its window lies in the store's final prefix (sealed
// shards + head shard), so the global batch of every step is the same set
// of pairs for any W, arrival order and restart. Rank 0 acknowledges each
// global batch once, releasing the store's back-pressure. Once every shard
// is sealed and the stream trained on, later epochs shuffle all pairs as in
// cached mode. When training ends the bound is lifted so teachers still
// extracting finish.
// Torch-free: the numerics are a TrainingEngine and the transport a
// GroupTransport (Gloo / NCCL by default), so the loop runs under fakes.
#ifndef LFT_WORKER_TRAINER_TRAINER_RUNNER_H_
#define LFT_WORKER_TRAINER_TRAINER_RUNNER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/prometheus_metrics.h"
#include "latent-store/pair_store_pool.h"
#include "worker/agent/task_runner.h"
#include "worker/collective/collective.h"
#include "worker/trainer/training_engine.h"

namespace lft {

// How one Run's ranks find each other and communicate: Gloo on CPUs, NCCL
// on GPUs by default (DeviceGroupTransport), an in-process fake in tests.
// One object per Run, used by that Run's thread only.
class GroupTransport {
 public:
  virtual ~GroupTransport() = default;
  // Rank 0 of a group of more than one rank: a new communicator id for the
  // others to join with. Whatever serves it (Gloo's rendezvous server) lives
  // as long as this object.
  virtual absl::StatusOr<std::string> CreateCommunicatorId() = 0;
  // Joins rank `rank` of `world` through `communicator_id`; `group` names
  // the generation ("<job>-g<generation>"). Errors of the transport.
  virtual absl::StatusOr<std::unique_ptr<Collective>> Join(
      uint32_t rank, uint32_t world, const std::string& communicator_id,
      const std::string& group) = 0;
};

struct TrainerRunnerOptions;
// Gloo over TCP for "cpu", NCCL for "cuda" / "cuda:N" (options.device,
// listen_host and collective_timeout).
std::unique_ptr<GroupTransport> NewDeviceGroupTransport(
    const TrainerRunnerOptions& options);

struct TrainerRunnerOptions {
  // "cpu" (Gloo) or "cuda" / "cuda:N" (NCCL).
  std::string device = "cpu";
  // Required; must outlive the runner.
  PairStorePool* stores = nullptr;
  // Required: makes the engine (NewFlowTrainingEngine in lft-worker).
  TrainingEngineFactory engine_factory;
  // Makes each Run's transport; empty = NewDeviceGroupTransport.
  std::function<std::unique_ptr<GroupTransport>()> transport_factory;
  // Address this rank's Gloo endpoints (and rank 0's rendezvous server)
  // listen on; peers must reach it.
  std::string listen_host = "127.0.0.1";
  // Bound on forming the group and on every collective call.
  absl::Duration collective_timeout = absl::Seconds(60);
  // After a collective fails (a peer died), how long to wait for the
  // coordinator to revoke the task (the group re-forms) before reporting
  // the failure as the task's own.
  absl::Duration regroup_wait = absl::Seconds(30);
  // How long a store call may keep failing with Unavailable (store down or
  // restarting; retried with backoff, latent-store/retrying_pair_store.h)
  // before the task fails naming the store. Ranks wait for the store at
  // different points, so a peer may meanwhile wait in a collective: keep
  // collective_timeout above the store restarts you want to ride out.
  absl::Duration store_unavailable_wait = absl::Minutes(5);
  // step-N checkpoints kept in the store (older ones are deleted).
  uint32_t keep_checkpoints = 3;
  // Pairs read on a thread of their own, one rank's batch ahead of the
  // step's own read-ahead (latent-store/prefetching_pair_reader.h): the
  // store's read (for lft-store, the gRPC read and parse) then runs beside
  // the step. false: the trainer's thread reads.
  bool background_read = true;
  // Optional: lft_trainer_* metrics labelled job and role. Must outlive
  // the runner.
  MetricsRegistry* metrics = nullptr;
  // Tests only: an interruptible pause after every step.
  absl::Duration pause_per_step = absl::ZeroDuration();
};

class TrainerRunner : public TaskRunner {
 public:
  explicit TrainerRunner(TrainerRunnerOptions options);

  // Trains until the job's step budget; returns the final checkpoint's name.
  // Errors: InvalidArgument for a task that is not training, a batch not
  // divisible by the world size, or a streaming task that names no
  // extraction_shards; FailedPrecondition when the job has fewer
  // pairs than one global batch; Aborted when the group was dissolved;
  // Cancelled when the task was revoked; store, engine and collective
  // errors annotated with the job, rank and step.
  absl::StatusOr<TaskResult> Run(const lft::v1::Task& task,
                                 TaskContext* context) override;

 private:
  const TrainerRunnerOptions options_;
};

}  // namespace lft

#endif  // LFT_WORKER_TRAINER_TRAINER_RUNNER_H_
