// Tensors <-> safetensors files (copying; for fixtures, dumps and
// checkpoints of small modules). Supported dtypes: F32, F64, BF16, F16, I64,
// I32.
#ifndef LFT_WORKER_MODEL_TENSOR_IO_H_
#define LFT_WORKER_MODEL_TENSOR_IO_H_

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace lft {

// Writes every tensor (moved to CPU, made contiguous) atomically to `path`.
// InvalidArgument for an unsupported dtype; I/O errors from the writer.
absl::Status SaveTensors(const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& path);
// Reads every tensor of `path` into owned CPU tensors. Errors of
// SafetensorsFile::Open; InvalidArgument for a dtype torch lacks here.
absl::StatusOr<std::map<std::string, torch::Tensor>> LoadTensors(
    const std::string& path);

// In-memory forms of the same, with the file's "__metadata__" string map:
// for blobs kept in the latent store (checkpoints) rather than in files.
struct TensorBundle {
  std::map<std::string, torch::Tensor> tensors;
  std::map<std::string, std::string> metadata;
};
absl::StatusOr<std::string> SerializeTensors(const TensorBundle& bundle);
// Errors of SafetensorsFile::FromBytes (truncated or malformed bytes) and
// InvalidArgument for a dtype torch lacks here.
absl::StatusOr<TensorBundle> ParseTensors(absl::string_view bytes);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_TENSOR_IO_H_
