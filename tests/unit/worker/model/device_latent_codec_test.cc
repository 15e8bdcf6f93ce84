// EncodeLatents / DecodeLatents (worker/model/device_latent_codec.h)
// against the scalar codecs (common/tensor/tensor_codec.h): every codec,
// float32 and bfloat16 inputs, special values, on the CPU and, where there is
// one, the GPU. The contract is bit equality (quiet NaNs chosen so that both
// sides give one pattern), so the tolerance is zero; NaN payload bits of the
// 2-byte codecs are the one documented exception.
#include "worker/model/device_latent_codec.h"

#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace lft {
namespace {

// [3, 5, 16] float32: normal values at several scales plus, in sequence 1,
// NaN, +-Inf, +-0, a subnormal, values past fp16 and fp8 range, and a row
// of zeros and a row whose only non-zero values are infinite.
torch::Tensor Values() {
  auto gen = at::detail::createCPUGenerator(7);
  torch::Tensor x = at::normal(0.0, 1.0, {3, 5, 16}, gen);
  x[0] *= 30.0;
  x[2] *= 1e-3;
  auto a = x.accessor<float, 3>();
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  a[1][0][0] = nan;
  a[1][0][1] = inf;
  a[1][0][2] = -inf;
  a[1][0][3] = -0.0f;
  a[1][0][4] = 1e-40f;
  a[1][0][5] = 70000.0f;
  a[1][0][6] = -1e30f;
  for (int c = 0; c < 16; ++c) a[1][1][c] = c % 2 ? 0.0f : -0.0f;
  for (int c = 0; c < 16; ++c) a[1][2][c] = c == 3 ? -inf : (c == 9 ? inf : 0);
  return x;
}

void ExpectMatchesEncodeRows(const torch::Tensor& x, TensorCodec codec) {
  SCOPED_TRACE(std::string(TensorCodecName(codec)) + " from " +
               std::string(c10::toString(x.scalar_type())) + " on " +
               x.device().str());
  auto encoded = EncodeLatents(x, codec);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  torch::Tensor got = encoded->to(torch::kCPU).contiguous();
  torch::Tensor f = x.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2);
  ASSERT_EQ(got.size(0), b);
  ASSERT_EQ(got.size(1), static_cast<int64_t>(EncodedBytes(codec, t, h)));
  for (int64_t i = 0; i < b; ++i) {
    std::string want;
    ASSERT_TRUE(EncodeRows(codec,
                           absl::MakeConstSpan(f[i].data_ptr<float>(),
                                               static_cast<size_t>(t * h)),
                           t, h, &want)
                    .ok());
    const uint8_t* g = got[i].data_ptr<uint8_t>();
    const auto* w = reinterpret_cast<const uint8_t*>(want.data());
    const bool two_byte =
        codec == TensorCodec::kBF16 || codec == TensorCodec::kF16;
    for (size_t k = 0; k < want.size(); ++k) {
      if (two_byte && k % 2 == 0) {
        // The one allowed difference: the payload of a NaN.
        const uint16_t a = static_cast<uint16_t>(g[k] | g[k + 1] << 8);
        const uint16_t e = static_cast<uint16_t>(w[k] | w[k + 1] << 8);
        const bool a_nan = codec == TensorCodec::kBF16
                               ? std::isnan(Bf16ToFloat(a))
                               : std::isnan(F16ToFloat(a));
        const bool e_nan = codec == TensorCodec::kBF16
                               ? std::isnan(Bf16ToFloat(e))
                               : std::isnan(F16ToFloat(e));
        if (a_nan && e_nan) {
          ++k;
          continue;
        }
      }
      ASSERT_EQ(g[k], w[k])
          << "sequence " << i << " byte " << k << " of " << want.size();
    }
  }
}

// DecodeLatents of the scalar encoding equals DecodeRows value for value
// (NaN where DecodeRows has NaN).
void ExpectDecodeMatchesDecodeRows(const torch::Tensor& x, TensorCodec codec) {
  SCOPED_TRACE(std::string("decode ") + std::string(TensorCodecName(codec)) +
               " on " + x.device().str());
  torch::Tensor f = x.to(torch::kCPU, torch::kFloat).contiguous();
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2);
  const int64_t bytes = static_cast<int64_t>(EncodedBytes(codec, t, h));
  torch::Tensor encoded = torch::empty({b, bytes}, torch::kByte);
  std::vector<std::vector<float>> want(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    std::string e;
    ASSERT_TRUE(EncodeRows(codec,
                           absl::MakeConstSpan(f[i].data_ptr<float>(),
                                               static_cast<size_t>(t * h)),
                           t, h, &e)
                    .ok());
    std::memcpy(encoded[i].data_ptr(), e.data(), e.size());
    auto d = DecodeRowsToVector(codec, e, t, h);
    ASSERT_TRUE(d.ok());
    want[static_cast<size_t>(i)] = *d;
  }
  auto got = DecodeLatents(encoded.to(x.device()), codec, t, h);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->sizes(), x.sizes());
  torch::Tensor g = got->to(torch::kCPU).contiguous();
  for (int64_t i = 0; i < b; ++i) {
    const float* gp = g[i].data_ptr<float>();
    for (int64_t k = 0; k < t * h; ++k) {
      const float w = want[static_cast<size_t>(i)][static_cast<size_t>(k)];
      if (std::isnan(w)) {
        ASSERT_TRUE(std::isnan(gp[k])) << "sequence " << i << " value " << k;
      } else {
        ASSERT_EQ(std::memcmp(&gp[k], &w, 4), 0)
            << "sequence " << i << " value " << k << ": " << gp[k] << " vs "
            << w;
      }
    }
  }
  EXPECT_EQ(DecodeLatents(encoded, codec, t, h + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

void CheckAllCodecs(torch::Device device) {
  torch::Tensor x = Values().to(device);
  for (TensorCodec c : {TensorCodec::kF32, TensorCodec::kBF16,
                        TensorCodec::kF16, TensorCodec::kFp8E4M3}) {
    ExpectMatchesEncodeRows(x, c);
    // What the GPU teacher hands over: bfloat16 hidden states.
    ExpectMatchesEncodeRows(x.to(torch::kBFloat16), c);
    ExpectDecodeMatchesDecodeRows(x, c);
  }
}

TEST(DeviceLatentCodecTest, EveryCodecMatchesEncodeRowsOnCpu) {
  CheckAllCodecs(torch::kCPU);
}

TEST(DeviceLatentCodecTest, EveryCodecMatchesEncodeRowsOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  CheckAllCodecs(torch::Device("cuda"));
}

TEST(DeviceLatentCodecTest, RejectsWhatIsNotBTH) {
  EXPECT_EQ(
      EncodeLatents(torch::zeros({4, 4}), TensorCodec::kBF16).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      EncodeLatents(torch::zeros({1, 2, 3}, torch::kLong), TensorCodec::kBF16)
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lft
