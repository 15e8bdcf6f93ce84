// The store's codecs on the device that holds the tensors: the teacher
// encodes hidden states before they cross to the host, the trainer decodes
// encoded pairs after they crossed to the GPU, so that only encoded bytes
// travel and no host loop touches a value.
//
// What it computes: x [B, T, H] (any float dtype, any device) ->
// uint8 [B, EncodedBytes(codec, T, H)], row b being exactly the bytes
// EncodeRows(codec, float32(x[b]), T, H) writes (common/tensor/tensor_codec.h):
//   f32 / bf16 / f16: the element bytes, little-endian, converted with
//     round-to-nearest-even (as the scalar codecs do);
//   fp8-e4m3: T float32 scales (max |x| over the row's finite values / 448,
//     a true division) then T * H codes, RNE(x / scale) saturated to +-448,
//     NaN kept, +-Inf saturated, a row without finite non-zero values coded
//     as signed zeros.
// Why on the device: a 2048 x 1024 pair is 16 MiB as float32 on the host
// but 8 MiB as bf16 and 4 MiB as fp8; converting and encoding on the GPU
// takes microseconds where the host loop took the extraction's whole time.
// The only bit patterns that may differ from EncodeRows are NaN payloads
// (both give a quiet NaN). fp8 on the device needs LibTorch >= 2.1
// (Float8_e4m3fn); older LibTorch encodes fp8 on the host with EncodeRows.
// Decoding: uint8 [B, EncodedBytes(codec, T, H)] -> float32 [B, T, H],
// exactly DecodeRows's values (fp8: code value times the row's scale, one
// float32 multiplication).
// tests/unit/worker/device_latent_codec_test.cc compares every codec
// against EncodeRows / DecodeRows bit for bit, special values included.
#ifndef LFT_WORKER_MODEL_DEVICE_LATENT_CODEC_H_
#define LFT_WORKER_MODEL_DEVICE_LATENT_CODEC_H_

#include <torch/torch.h>

#include "absl/status/statusor.h"
#include "common/tensor/tensor_codec.h"

namespace lft {

// InvalidArgument unless x is a floating-point [B, T, H] tensor. The result
// is on x's device and contiguous.
absl::StatusOr<torch::Tensor> EncodeLatents(const torch::Tensor& x,
                                            TensorCodec codec);

// InvalidArgument unless `encoded` is uint8 [B, EncodedBytes(codec, t, h)].
// The result is float32 [B, t, h] on encoded's device.
absl::StatusOr<torch::Tensor> DecodeLatents(const torch::Tensor& encoded,
                                            TensorCodec codec, int64_t t,
                                            int64_t h);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_DEVICE_LATENT_CODEC_H_
