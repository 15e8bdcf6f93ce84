// Tests for common/tensor/tensor_codec.h (kept with the store tests: the store
// is its only user so far). Exact values come from the format definitions;
// round-trip bounds from each format's unit roundoff (half the spacing of
// representable values): bf16 keeps 7 mantissa bits (relative error
// <= 2^-8), f16 10 (<= 2^-11 in the normal range), and e4m3 3 (<= 2^-4 of
// the value, or half the subnormal step, 2^-10 of 448 * scale, near zero).
#include "common/tensor/tensor_codec.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "gtest/gtest.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::StatusIs;

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

TEST(Bf16Test, ExactValues) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToBf16(0.0f), 0x0000);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  // Ties go to even: 1 + 2^-8 lies halfway between 0x3F80 and 0x3F81.
  EXPECT_EQ(FloatToBf16(FromBits(0x3F808000u)), 0x3F80);
  EXPECT_EQ(FloatToBf16(FromBits(0x3F818000u)), 0x3F82);
  EXPECT_EQ(FloatToBf16(FromBits(0x3F808001u)), 0x3F81);
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0x4049), 3.140625f);
}

TEST(Bf16Test, NonFinite) {
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
  // A NaN whose payload sits in the low bits must not round to Inf.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(FromBits(0x7F800001u)))));
  // The largest float rounds up to Inf.
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7F80);
}

TEST(F16Test, ExactValues) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3C00);
  EXPECT_EQ(FloatToF16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7C00);  // halfway to 2^16 rounds to Inf
  EXPECT_EQ(FloatToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -24)), 0x0001);  // min subnormal
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie, even
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(F16ToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToFloat(FloatToF16(std::nanf("")))));
}

TEST(E4M3Test, ExactValues) {
  EXPECT_EQ(FloatToE4M3(0.0f), 0x00);
  EXPECT_EQ(FloatToE4M3(-0.0f), 0x80);
  EXPECT_EQ(FloatToE4M3(1.0f), 0x38);
  EXPECT_EQ(FloatToE4M3(-1.0f), 0xB8);
  EXPECT_EQ(FloatToE4M3(448.0f), 0x7E);
  EXPECT_EQ(FloatToE4M3(1000.0f), 0x7E);  // saturates
  EXPECT_EQ(FloatToE4M3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(FloatToE4M3(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(FloatToE4M3(std::nanf("")), 0x7F);
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -9)), 0x01);  // min subnormal
  EXPECT_EQ(FloatToE4M3(std::ldexp(1.0f, -6)), 0x08);  // min normal
  EXPECT_EQ(FloatToE4M3(1.0625f), 0x38);  // tie between 1 and 1.125 -> even
  EXPECT_EQ(FloatToE4M3(1.1875f), 0x3A);  // tie between 1.125 and 1.25
  EXPECT_EQ(FloatToE4M3(240.0f), 0x77);
  EXPECT_EQ(E4M3ToFloat(0x7E), 448.0f);
  EXPECT_EQ(E4M3ToFloat(0x01), std::ldexp(1.0f, -9));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0x7F)));
  EXPECT_TRUE(std::isnan(E4M3ToFloat(0xFF)));
}

TEST(E4M3Test, EveryCodeRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) == 0x7F) continue;  // NaN
    EXPECT_EQ(FloatToE4M3(E4M3ToFloat(static_cast<uint8_t>(c))), c) << c;
  }
}

struct CodecCase {
  TensorCodec codec;
  double max_nmse;
};

class RoundTripTest : public ::testing::TestWithParam<CodecCase> {};

TEST_P(RoundTripTest, ErrorIsBounded) {
  const CodecCase& c = GetParam();
  const size_t rows = 16, cols = 256;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> x(rows * cols);
  for (float& v : x) v = dist(rng);
  std::string enc;
  ASSERT_TRUE(EncodeRows(c.codec, x, rows, cols, &enc).ok());
  EXPECT_EQ(enc.size(), EncodedBytes(c.codec, rows, cols));
  auto y = DecodeRowsToVector(c.codec, enc, rows, cols);
  ASSERT_TRUE(y.ok()) << y.status();
  double err = 0, ref = 0;
  for (size_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (size_t k = 0; k < cols; ++k)
      amax = std::max(amax, std::fabs(x[r * cols + k]));
    for (size_t k = 0; k < cols; ++k) {
      const size_t i = r * cols + k;
      const double e = std::fabs(static_cast<double>((*y)[i]) - x[i]);
      err += e * e;
      ref += static_cast<double>(x[i]) * x[i];
      double bound = 0;
      switch (c.codec) {
        case TensorCodec::kF32:
          bound = 0;
          break;
        case TensorCodec::kBF16:
          bound = std::fabs(x[i]) * std::ldexp(1.0, -8);
          break;
        case TensorCodec::kF16:
          bound = std::fabs(x[i]) * std::ldexp(1.0, -11);
          break;
        case TensorCodec::kFp8E4M3:
          bound = std::max(std::fabs(x[i]) * std::ldexp(1.0, -4),
                           amax / 448.0 * std::ldexp(1.0, -10)) *
                  1.0001;
          break;
      }
      ASSERT_LE(e, bound) << "row " << r << " col " << k << " x=" << x[i];
    }
  }
  EXPECT_LE(err / ref, c.max_nmse);
  if (c.codec == TensorCodec::kF32) {
    EXPECT_EQ(*y, x);
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, RoundTripTest,
                         ::testing::Values(CodecCase{TensorCodec::kF32, 0.0},
                                           CodecCase{TensorCodec::kBF16, 1e-5},
                                           CodecCase{TensorCodec::kF16, 1e-6},
                                           CodecCase{TensorCodec::kFp8E4M3,
                                                     2e-3}));

TEST(Fp8RowsTest, ScaleIsRowMaxOver448) {
  std::vector<float> x = {1.0f, -896.0f, 2.0f, 0.5f};  // rows of 2
  std::string enc;
  ASSERT_TRUE(EncodeRows(TensorCodec::kFp8E4M3, x, 2, 2, &enc).ok());
  float s0, s1;
  std::memcpy(&s0, enc.data(), 4);
  std::memcpy(&s1, enc.data() + 4, 4);
  EXPECT_EQ(s0, 2.0f);
  EXPECT_EQ(s1, 2.0f / 448.0f);
  auto y = DecodeRowsToVector(TensorCodec::kFp8E4M3, enc, 2, 2);
  ASSERT_TRUE(y.ok());
  EXPECT_EQ((*y)[1], -896.0f);  // the row max is exact
  EXPECT_FLOAT_EQ((*y)[2], 2.0f);
}

TEST(Fp8RowsTest, NonFiniteAndZeroRows) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {inf, 1.0f, std::nanf(""), 0.0f, 0.0f, -0.0f};
  std::string enc;
  ASSERT_TRUE(EncodeRows(TensorCodec::kFp8E4M3, x, 3, 2, &enc).ok());
  auto y = DecodeRowsToVector(TensorCodec::kFp8E4M3, enc, 3, 2);
  ASSERT_TRUE(y.ok());
  // +Inf saturates to 448 * scale = the row's finite max.
  EXPECT_FLOAT_EQ((*y)[0], 1.0f);
  EXPECT_EQ((*y)[1], 1.0f);
  EXPECT_TRUE(std::isnan((*y)[2]));
  EXPECT_EQ((*y)[3], 0.0f);
  EXPECT_EQ((*y)[4], 0.0f);
  EXPECT_EQ((*y)[5], 0.0f);
}

TEST(CodecErrorsTest, SizeMismatchesAreInvalidArgument) {
  std::string enc = "unchanged";
  EXPECT_THAT(EncodeRows(TensorCodec::kBF16, std::vector<float>(5), 2, 3, &enc),
              StatusIs(absl::StatusCode::kInvalidArgument, "got 5 values"));
  EXPECT_EQ(enc, "unchanged");
  std::vector<float> out(6);
  EXPECT_THAT(DecodeRows(TensorCodec::kF16, std::string(11, 'x'), 2, 3,
                         absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, "must be 12 bytes"));
  EXPECT_THAT(DecodeRows(TensorCodec::kF16, std::string(12, 'x'), 2, 3,
                         absl::MakeSpan(out).subspan(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "output holds 5"));
  EXPECT_THAT(ParseTensorCodec("int4"),
              StatusIs(absl::StatusCode::kInvalidArgument, "fp8_e4m3"));
  EXPECT_THAT(TensorCodecFromByte(9),
              StatusIs(absl::StatusCode::kInvalidArgument, "codec id 9"));
}

TEST(CodecNamesTest, ParseRoundTrips) {
  for (TensorCodec c : {TensorCodec::kF32, TensorCodec::kBF16,
                        TensorCodec::kF16, TensorCodec::kFp8E4M3}) {
    auto parsed = ParseTensorCodec(TensorCodecName(c));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, c);
  }
}

}  // namespace
}  // namespace lft
