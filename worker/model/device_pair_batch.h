// Assembling a training batch on the GPU from encoded pairs.
//
// What it computes: for B pairs of equal length T, width H and one codec,
// x0 and x1 as float32 [B, T, H] on `device`, the same values DecodeRows
// gives. How: the encoded bytes (2 x B x EncodedBytes(codec, T, H), half
// the float32 size for bf16, a quarter for fp8) are copied into one pinned
// host buffer by several threads, cross to the GPU in one non-blocking copy
// and are decoded there (device_latent_codec.h). The host never touches a
// value and never waits for the GPU, so the copy of step i+1 overlaps the
// tail of step i. Pairs of unequal length (padding) are the caller's slow
// path: SameShape tells which.
#ifndef LFT_WORKER_MODEL_DEVICE_PAIR_BATCH_H_
#define LFT_WORKER_MODEL_DEVICE_PAIR_BATCH_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "latent-store/pair_store.h"

namespace lft {

struct DevicePairBatch {
  torch::Tensor x0, x1;  // float32 [B, T, H] on the device
};

// True if every pair has the first pair's tokens, hidden and codec.
bool SameShape(absl::Span<const LatentPairRecord> pairs);

// InvalidArgument for no pairs, pairs of different shapes or codecs (see
// SameShape), a width other than `hidden`, or payloads of the wrong size.
absl::StatusOr<DevicePairBatch> AssemblePairsOnDevice(
    absl::Span<const LatentPairRecord> pairs, int64_t hidden,
    const torch::Device& device);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_DEVICE_PAIR_BATCH_H_
