// A trained latent flow layer (or regression layer) and the state that
// resumes its training, as one blob kept in the latent store.
//
// Format (docs/algorithms.md, "Checkpoint format"): a safetensors image with
//   weights/<name>     the layer's parameters (FlowLayerImpl::named_parameters
//                      names, float32)
//   optimizer/<name>   optimizer state tensors (AdamW: exp_avg/<param>,
//                      exp_avg_sq/<param>), float32
// and "__metadata__" entries "lft.format" = "lft-flow-checkpoint-1" plus the
// FlowCheckpointHeader fields below as decimal / plain strings ("lft.losses"
// is comma-separated %.9g). Every number the trainer needs to resume exactly
// is there: the step, the data position (epoch, global blocks consumed) and
// the seed; all training randomness is derived from (seed, step, sample
// key), so there is no hidden generator state to save.
#ifndef LFT_WORKER_MODEL_FLOW_CHECKPOINT_H_
#define LFT_WORKER_MODEL_FLOW_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/model/flow_layer.h"

namespace lft {

class GptNeoX;

struct FlowCheckpointHeader {
  int64_t first_layer = 0;  // m of the replaced block [m, n)
  int64_t end_layer = 0;    // n
  // "sfm", "fw", "hybrid" or "regression".
  std::string method;
  // "teacher" or "adaln-zero".
  std::string init = "teacher";
  int64_t time_embed_dim = 128;
  // Optimizer steps completed.
  uint64_t step = 0;
  // Training tokens consumed over all ranks.
  uint64_t tokens = 0;
  // Data position: epoch of the store's block order and global blocks of
  // that epoch's order consumed (ScanOptions::start_block to resume with).
  uint64_t epoch = 0;
  uint64_t blocks_consumed = 0;
  uint64_t seed = 0;
  // Ranks that trained up to this checkpoint (informational).
  uint32_t world_size = 1;
  // Global mean training loss of every step so far (the loss curve).
  std::vector<double> losses;
};

struct FlowCheckpoint {
  FlowCheckpointHeader header;
  std::map<std::string, torch::Tensor> weights;
  std::map<std::string, torch::Tensor> optimizer;
};

// The blob for `checkpoint`. InvalidArgument for an unsupported tensor dtype.
absl::StatusOr<std::string> SerializeFlowCheckpoint(
    const FlowCheckpoint& checkpoint);

// Parses a blob written by SerializeFlowCheckpoint. InvalidArgument (naming
// the entry) if it is not a flow checkpoint, a header field is missing or
// malformed; the errors of ParseTensors for corrupt bytes.
absl::StatusOr<FlowCheckpoint> ParseFlowCheckpoint(absl::string_view bytes);

// The layer's parameters, detached CPU float32 copies, keyed by name.
std::map<std::string, torch::Tensor> FlowLayerWeights(FlowLayerImpl& layer);

// Builds a FlowLayer shaped like `teacher`'s layers (initialised per
// checkpoint.header.init from layer m) on `options.device`, then copies the
// checkpoint's weights into it. InvalidArgument if the block lies outside
// the teacher, or a weight is missing, unexpected or of another shape (the
// message names it: a checkpoint of another teacher or block).
absl::StatusOr<FlowLayer> RestoreFlowLayer(const GptNeoX& teacher,
                                           const FlowCheckpoint& checkpoint,
                                           FlowLayerOptions options);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_FLOW_CHECKPOINT_H_
