// Pair-to-batch assembly, the one place latent pairs from the store become
// tensors (the trainer's engine and the evaluator's regression baseline use
// it).
//
// Computes, for B = pairs.size() records of width H and T = the longest
// record's token count:
//   x0, x1  float32 [B, T, H]  decoded rows (tensor_codec.h), rows past a
//                              record's own tokens zero;
//   mask    float32 [B, T]     1 for a record's tokens, 0 for padding.
// Everything is on the CPU; callers move it to their device. Each record is
// decoded independently into its own slice, so the decode may later be
// spread over threads and written into a caller's pinned buffer (pass one
// in `out`); the function keeps no state.
//
// On a GPU the batch is assembled there instead (AssemblePairsOnDevice):
// for B pairs of equal length T, width H and one codec, x0 and x1 as
// float32 [B, T, H] on the device, the same values DecodeRows gives. The
// encoded bytes (half the float32 size for bf16, a quarter for fp8) are
// copied into one pinned host buffer by several threads, cross to the GPU in
// one non-blocking copy and are decoded there (device_latent_codec.h): the
// host never touches a value and never waits for the GPU. Pairs of unequal
// length (padding) take AssemblePairBatch: SameShape tells which.
#ifndef LFT_WORKER_MODEL_PAIR_BATCH_H_
#define LFT_WORKER_MODEL_PAIR_BATCH_H_

#include <torch/torch.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "latent-store/pair_store.h"

namespace lft {

struct PairBatch {
  torch::Tensor x0;     // [B, T, H] float32, CPU
  torch::Tensor x1;     // [B, T, H] float32, CPU
  torch::Tensor mask;   // [B, T] float32, CPU
  bool padded = false;  // some record is shorter than T
};

// Decodes `pairs` into *out. If out->x0 / x1 / mask already are contiguous
// float32 CPU tensors of exactly the batch's shape (a reused, e.g. pinned,
// buffer) they are overwritten in place; otherwise new ones are allocated.
// InvalidArgument for an empty span or a record whose width is not
// `hidden` ("pair (shard S, sequence Q) has width W but the teacher's is
// H"); the codec's errors for a corrupt payload. On error *out is
// unspecified.
absl::Status AssemblePairBatch(absl::Span<const LatentPairRecord> pairs,
                               int64_t hidden, PairBatch* out);

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

#endif  // LFT_WORKER_MODEL_PAIR_BATCH_H_
