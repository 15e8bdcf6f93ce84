// Encoders/decoders for float32 rows; see tensor_codec.h for the formats.
// The f16 conversions follow Maratyszcza's FP16 library (bit tricks that let
// the FPU do the rounding); bf16 rounds by integer add; e4m3 decodes through
// a 256-entry table and encodes by exponent/mantissa split.
#include "common/tensor/tensor_codec.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace lft {
namespace {

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

std::array<float, 256> MakeE4M3Table() {
  std::array<float, 256> table{};
  for (int i = 0; i < 256; ++i) {
    const int sign = (i >> 7) & 1;
    const int exponent = (i >> 3) & 0xF;
    const int mantissa = i & 0x7;
    float v;
    if (exponent == 0xF && mantissa == 0x7) {
      v = std::numeric_limits<float>::quiet_NaN();
    } else if (exponent == 0) {
      v = std::ldexp(static_cast<float>(mantissa) / 8.0f, -6);
    } else {
      v = std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
    }
    table[i] = sign ? -v : v;
  }
  return table;
}

const std::array<float, 256>& E4M3Table() {
  static const std::array<float, 256> table = MakeE4M3Table();
  return table;
}

inline void StoreLe32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v);
  p[1] = static_cast<char>(v >> 8);
  p[2] = static_cast<char>(v >> 16);
  p[3] = static_cast<char>(v >> 24);
}
inline uint32_t LoadLe32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) |
         (static_cast<uint32_t>(u[2]) << 16) |
         (static_cast<uint32_t>(u[3]) << 24);
}
inline void StoreLe16(char* p, uint16_t v) {
  p[0] = static_cast<char>(v);
  p[1] = static_cast<char>(v >> 8);
}
inline uint16_t LoadLe16(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}

}  // namespace

absl::string_view TensorCodecName(TensorCodec codec) {
  switch (codec) {
    case TensorCodec::kF32:
      return "f32";
    case TensorCodec::kBF16:
      return "bf16";
    case TensorCodec::kF16:
      return "f16";
    case TensorCodec::kFp8E4M3:
      return "fp8_e4m3";
  }
  return "unknown";
}

absl::StatusOr<TensorCodec> ParseTensorCodec(absl::string_view name) {
  const std::string n = absl::AsciiStrToLower(name);
  if (n == "f32" || n == "float32" || n == "fp32") return TensorCodec::kF32;
  if (n == "bf16" || n == "bfloat16") return TensorCodec::kBF16;
  if (n == "f16" || n == "float16" || n == "fp16") return TensorCodec::kF16;
  if (n == "fp8_e4m3" || n == "fp8" || n == "e4m3")
    return TensorCodec::kFp8E4M3;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tensor codec '", name,
                   "'; expected one of f32, bf16, f16, fp8_e4m3"));
}

absl::StatusOr<TensorCodec> TensorCodecFromByte(uint8_t value) {
  if (value >= 1 && value <= 4) return static_cast<TensorCodec>(value);
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tensor codec id ", value, "; expected 1..4"));
}

size_t EncodedBytes(TensorCodec codec, size_t rows, size_t cols) {
  switch (codec) {
    case TensorCodec::kF32:
      return rows * cols * 4;
    case TensorCodec::kBF16:
    case TensorCodec::kF16:
      return rows * cols * 2;
    case TensorCodec::kFp8E4M3:
      return rows * 4 + rows * cols;
  }
  return 0;
}

uint16_t FloatToBf16(float value) {
  uint32_t u = FloatBits(value);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
    return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  }
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float Bf16ToFloat(uint16_t bits) {
  return BitsFloat(static_cast<uint32_t>(bits) << 16);
}

uint16_t FloatToF16(float value) {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(value) * scale_to_inf) * scale_to_zero;
  const uint32_t w = FloatBits(value);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = BitsFloat((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = FloatBits(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) |
                               (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

float F16ToFloat(uint16_t bits) {
  const uint32_t w = static_cast<uint32_t>(bits) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = BitsFloat((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float denormalized = BitsFloat((two_w >> 17) | magic_mask) - 0.5f;
  const uint32_t denormalized_cutoff = 1u << 27;
  const uint32_t result =
      sign | (two_w < denormalized_cutoff ? FloatBits(denormalized)
                                          : FloatBits(normalized));
  return BitsFloat(result);
}

uint8_t FloatToE4M3(float value) {
  const uint8_t sign = std::signbit(value) ? 0x80 : 0x00;
  if (std::isnan(value)) return sign | 0x7F;
  const float a = std::fabs(value);
  // 464 is the midpoint between 448 and the (absent) next value 480; every
  // larger magnitude, Inf included, saturates.
  if (a >= 464.0f) return sign | 0x7E;
  if (a < 0x1.0p-6f) {
    // Subnormal range: multiples of 2^-9. q == 8 is the smallest normal,
    // whose code (exponent 1, mantissa 0) is 8 as well.
    const float q = std::nearbyint(a * 512.0f);
    return sign | static_cast<uint8_t>(q);
  }
  int exponent;
  const float fraction = std::frexp(a, &exponent);  // a = fraction * 2^exp
  // a = (1 + m/8) * 2^(exponent - 1), fraction in [0.5, 1).
  int e = exponent - 1;
  int m = static_cast<int>(std::nearbyint((fraction * 2.0f - 1.0f) * 8.0f));
  if (m == 8) {
    m = 0;
    ++e;
  }
  int code = ((e + 7) << 3) | m;
  if (code > 0x7E) code = 0x7E;  // 448 < a < 464 rounds down to 448
  return sign | static_cast<uint8_t>(code);
}

float E4M3ToFloat(uint8_t bits) { return E4M3Table()[bits]; }

absl::Status EncodeRows(TensorCodec codec, absl::Span<const float> values,
                        size_t rows, size_t cols, std::string* out) {
  if (values.size() != rows * cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("EncodeRows: got ", values.size(), " values for shape [",
                     rows, ", ", cols, "]"));
  }
  std::string buf(EncodedBytes(codec, rows, cols), '\0');
  char* p = buf.data();
  const float* v = values.data();
  const size_t n = rows * cols;
  switch (codec) {
    case TensorCodec::kF32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      if (n > 0) std::memcpy(p, v, n * 4);
#else
      for (size_t i = 0; i < n; ++i) StoreLe32(p + 4 * i, FloatBits(v[i]));
#endif
      break;
    case TensorCodec::kBF16:
      for (size_t i = 0; i < n; ++i) StoreLe16(p + 2 * i, FloatToBf16(v[i]));
      break;
    case TensorCodec::kF16:
      for (size_t i = 0; i < n; ++i) StoreLe16(p + 2 * i, FloatToF16(v[i]));
      break;
    case TensorCodec::kFp8E4M3: {
      char* codes = p + rows * 4;
      for (size_t r = 0; r < rows; ++r) {
        const float* row = v + r * cols;
        float amax = 0.0f;
        for (size_t c = 0; c < cols; ++c) {
          const float a = std::fabs(row[c]);
          if (std::isfinite(a)) amax = std::max(amax, a);
        }
        const float scale = amax / kE4M3Max;
        StoreLe32(p + 4 * r, FloatBits(scale));
        // Multiplying by the reciprocal would be faster but is off by one
        // ulp for some inputs; dividing keeps encode exact at known points.
        uint8_t* row_codes = reinterpret_cast<uint8_t*>(codes + r * cols);
        if (scale == 0.0f) {
          for (size_t c = 0; c < cols; ++c) {
            row_codes[c] = std::isfinite(row[c])
                               ? (std::signbit(row[c]) ? 0x80 : 0x00)
                               : FloatToE4M3(row[c]);
          }
        } else {
          for (size_t c = 0; c < cols; ++c) {
            row_codes[c] = FloatToE4M3(row[c] / scale);
          }
        }
      }
      break;
    }
  }
  *out = std::move(buf);
  return absl::OkStatus();
}

absl::Status DecodeRows(TensorCodec codec, absl::string_view encoded,
                        size_t rows, size_t cols, absl::Span<float> out) {
  const size_t want = EncodedBytes(codec, rows, cols);
  if (encoded.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DecodeRows: ", TensorCodecName(codec), " payload for shape [", rows,
        ", ", cols, "] must be ", want, " bytes, got ", encoded.size()));
  }
  if (out.size() != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DecodeRows: output holds ", out.size(), " values, shape [", rows, ", ",
        cols, "] needs ", rows * cols));
  }
  const char* p = encoded.data();
  float* o = out.data();
  const size_t n = rows * cols;
  switch (codec) {
    case TensorCodec::kF32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      if (n > 0) std::memcpy(o, p, n * 4);
#else
      for (size_t i = 0; i < n; ++i) o[i] = BitsFloat(LoadLe32(p + 4 * i));
#endif
      break;
    case TensorCodec::kBF16:
      for (size_t i = 0; i < n; ++i) o[i] = Bf16ToFloat(LoadLe16(p + 2 * i));
      break;
    case TensorCodec::kF16:
      for (size_t i = 0; i < n; ++i) o[i] = F16ToFloat(LoadLe16(p + 2 * i));
      break;
    case TensorCodec::kFp8E4M3: {
      const auto& table = E4M3Table();
      const auto* codes = reinterpret_cast<const uint8_t*>(p + rows * 4);
      for (size_t r = 0; r < rows; ++r) {
        const float scale = BitsFloat(LoadLe32(p + 4 * r));
        for (size_t c = 0; c < cols; ++c) {
          o[r * cols + c] = table[codes[r * cols + c]] * scale;
        }
      }
      break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> DecodeRowsToVector(TensorCodec codec,
                                                      absl::string_view encoded,
                                                      size_t rows,
                                                      size_t cols) {
  std::vector<float> out(rows * cols);
  absl::Status s = DecodeRows(codec, encoded, rows, cols, absl::MakeSpan(out));
  if (!s.ok()) return s;
  return out;
}

}  // namespace lft
