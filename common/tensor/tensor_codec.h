// Tensor codecs for latent payloads: float32 rows in, bytes out, and back.
//
// What it computes: a [rows, cols] float32 matrix (row = token, cols =
// hidden width) is encoded as one of
//   kF32      4 bytes/element, exact;
//   kBF16     2 bytes/element, round-to-nearest-even on the top 16 bits;
//   kF16      2 bytes/element, IEEE binary16, round-to-nearest-even,
//             subnormals kept, overflow (|x| >= 65520) becomes +-Inf;
//   kFp8E4M3  rows * 4 bytes of fp32 scales (little-endian, one per row),
//             then 1 byte/element in OCP FP8 E4M3FN (bias 7, max 448, no
//             Inf, NaN = 0x7F/0xFF). scale = max|x| / 448 over the row's
//             finite values, code = RNE(x / scale) saturated to +-448.
// Decoding returns float32. Why these: hidden states of a 1024-wide model are
// 4 KiB/token as an fp32 pair; bf16 halves that at ~1e-5 NMSE, fp8 quarters
// it at ~1e-3 (docs/benchmarks.md measures both on real states).
//
// Non-finite values: kF32/kBF16/kF16 keep NaN as a (quiet) NaN and +-Inf as
// +-Inf. kFp8E4M3 has no Inf: NaN encodes as NaN (0x7F with the sign), +-Inf
// saturates to +-448 * scale, and the scale is taken over finite values only
// (a row with no finite non-zero value gets scale 0 and decodes as zeros,
// NaNs excepted). Nothing here crashes on any input bit pattern.
//
// Byte order is little-endian throughout (the payload is what a torch
// tensor's storage holds on x86 and aarch64), so bf16/f16 payloads can be
// handed to torch::from_blob without conversion.
#ifndef LFT_COMMON_TENSOR_TENSOR_CODEC_H_
#define LFT_COMMON_TENSOR_TENSOR_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lft {

// Values are stable: they are written into store records and match
// lft.v1.TensorDtype on the wire.
enum class TensorCodec : uint8_t {
  kF32 = 1,
  kBF16 = 2,
  kF16 = 3,
  kFp8E4M3 = 4,
};

// "f32", "bf16", "f16", "fp8_e4m3".
absl::string_view TensorCodecName(TensorCodec codec);
// Accepts the names above (case-insensitive; also "float32", "bfloat16",
// "float16", "fp8"). InvalidArgument naming the accepted set otherwise.
absl::StatusOr<TensorCodec> ParseTensorCodec(absl::string_view name);
// InvalidArgument for a byte that is not a known codec.
absl::StatusOr<TensorCodec> TensorCodecFromByte(uint8_t value);

// Exact size in bytes of an encoded [rows, cols] matrix.
size_t EncodedBytes(TensorCodec codec, size_t rows, size_t cols);

// Encodes `values` (row-major [rows, cols]) and replaces *out with the
// result. InvalidArgument if values.size() != rows * cols; *out is left
// unchanged then.
absl::Status EncodeRows(TensorCodec codec, absl::Span<const float> values,
                        size_t rows, size_t cols, std::string* out);

// Decodes `encoded` into `out` (row-major [rows, cols]). InvalidArgument if
// encoded.size() != EncodedBytes(codec, rows, cols) or out.size() !=
// rows * cols; `out` is left unchanged then.
absl::Status DecodeRows(TensorCodec codec, absl::string_view encoded,
                        size_t rows, size_t cols, absl::Span<float> out);

// Convenience: decode into a new vector.
absl::StatusOr<std::vector<float>> DecodeRowsToVector(TensorCodec codec,
                                                      absl::string_view encoded,
                                                      size_t rows, size_t cols);

// Scalar conversions (exposed for tests and for callers that convert a few
// values). All round to nearest, ties to even.
uint16_t FloatToBf16(float value);
float Bf16ToFloat(uint16_t bits);
uint16_t FloatToF16(float value);
float F16ToFloat(uint16_t bits);
// Saturating: |value| > 448 becomes +-448; NaN and +-Inf as described above.
uint8_t FloatToE4M3(float value);
float E4M3ToFloat(uint8_t bits);

// Largest finite E4M3FN magnitude.
inline constexpr float kE4M3Max = 448.0f;

}  // namespace lft

#endif  // LFT_COMMON_TENSOR_TENSOR_CODEC_H_
