// The seam between the trainer's control loop (TrainerRunner: rendezvous,
// data position, learning-rate schedule, the gradient all-reduce, checkpoint
// cadence, progress) and the numerics that train one latent flow layer
// (FlowTrainingEngine, LibTorch). No torch types cross it, so the control
// loop is tested with a fake engine and the engine without a coordinator.
#ifndef LFT_WORKER_TRAINER_TRAINING_ENGINE_H_
#define LFT_WORKER_TRAINER_TRAINING_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "latent-store/pair_store.h"
#include "lft/v1/job.pb.h"
#include "worker/collective/collective.h"

namespace lft {

// Where training stands; saved in every checkpoint.
struct TrainingPosition {
  uint64_t step = 0;    // optimizer steps completed
  uint64_t tokens = 0;  // training tokens consumed over all ranks
  uint64_t epoch = 0;   // epoch of the store's shuffled pair order
  // Pairs of that epoch's order consumed over all ranks; the next step's
  // global batch starts there (ScanOptions::start_block, block_pairs 1).
  uint64_t pairs_consumed = 0;
  // Global mean loss of every step so far.
  std::vector<double> losses;
};

// One rank's numerics. Not thread-safe; one trainer thread drives it.
class TrainingEngine {
 public:
  virtual ~TrainingEngine() = default;

  // Zeroes the gradient buffer, runs forward and backward over this rank's
  // share of the step (decoded from `pairs`), and leaves in the buffer the
  // gradient of this rank's mean loss followed by that loss itself (the
  // last element), so that one all-reduce sums both. The randomness of each
  // pair (flow times) is derived from (seed, step, pair key), independent of
  // the rank that holds it. InvalidArgument for a pair of the wrong width.
  virtual absl::Status ComputeGradients(
      absl::Span<const LatentPairRecord> pairs, uint64_t step) = 0;

  // True if ComputeGradients returns while the device still works on the
  // step (CUDA): the runner then reads the next step's pairs meanwhile and
  // hands them to StageNextStep, so that neither the store read nor the
  // transfer leaves the device idle. False (the default): nothing to
  // overlap, the runner reads each step's pairs when the step starts.
  virtual bool OverlapsInput() const { return false; }
  // Starts moving `pairs` (those of step `step`) to the device: host
  // copies, transfer and decode queued behind the running step. A later
  // ComputeGradients(pairs, step) with the same pairs uses the result;
  // with others it does the work itself. Errors surface there.
  virtual void StageNextStep(absl::Span<const LatentPairRecord> pairs,
                             uint64_t step) {
    (void)pairs;
    (void)step;
  }

  // The buffer ComputeGradients fills: gradient_count() elements of
  // gradient_dtype(), in host memory for Gloo and device memory for NCCL.
  // Model FLOPs (forward and backward, worker/model/flow_flops.h) of one
  // step per token of the global batch at `sequence_length`, for MFU
  // (lft_trainer_model_flops_total); 0 if the engine does not know.
  virtual double ModelFlopsPerToken(int64_t sequence_length) const {
    (void)sequence_length;
    return 0;
  }

  virtual void* gradient_data() = 0;
  virtual size_t gradient_count() const = 0;
  virtual CollectiveDtype gradient_dtype() const = 0;

  // After the all-reduce: scales the buffer by `scale` (1 / world size),
  // clips the gradient to global norm `clip_norm` (0 = off), takes one AdamW
  // step at `learning_rate`, and returns the mean loss over ranks (the last
  // element, scaled).
  virtual absl::StatusOr<double> ApplyGradients(double scale, double clip_norm,
                                                double learning_rate) = 0;

  // The checkpoint blob (worker/model/flow_checkpoint.h) of the current
  // weights and optimizer state at `position`.
  virtual absl::StatusOr<std::string> SaveCheckpoint(
      const TrainingPosition& position, uint32_t world_size) = 0;
  // Loads weights and optimizer state from a blob written by SaveCheckpoint
  // and returns its position. InvalidArgument if it belongs to another
  // block, method or teacher; the parse errors for corrupt bytes.
  virtual absl::StatusOr<TrainingPosition> RestoreCheckpoint(
      absl::string_view blob) = 0;
};

// Makes the engine for a job: loads what it needs of the teacher named in
// `spec` and builds the layer on `device` ("cpu", "cuda", "cuda:N"). Errors
// name the teacher directory.
using TrainingEngineFactory =
    std::function<absl::StatusOr<std::unique_ptr<TrainingEngine>>(
        const lft::v1::JobSpec& spec, const std::string& device)>;

}  // namespace lft

#endif  // LFT_WORKER_TRAINER_TRAINING_ENGINE_H_
