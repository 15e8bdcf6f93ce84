// See device_latent_codec.h.
#include "worker/model/device_latent_codec.h"

#include <torch/version.h>

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "worker/model/torch_guard.h"

#if TORCH_VERSION_MAJOR > 2 || \
    (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define LFT_TORCH_HAS_FP8 1
#endif

namespace lft {
namespace {

// Reinterprets a contiguous [B, T, H] tensor's storage as bytes [B, n].
torch::Tensor AsBytes(const torch::Tensor& x) {
  return x.contiguous().view(torch::kByte).reshape({x.size(0), -1});
}

#ifndef LFT_TORCH_HAS_FP8
torch::Tensor EncodeFp8OnHost(const torch::Tensor& x) {
  const int64_t b = x.size(0), t = x.size(1), h = x.size(2);
  torch::Tensor f = x.to(torch::kCPU, torch::kFloat).contiguous();
  const size_t bytes = EncodedBytes(TensorCodec::kFp8E4M3, t, h);
  torch::Tensor out =
      torch::empty({b, static_cast<int64_t>(bytes)}, torch::kByte);
  std::string row;
  for (int64_t i = 0; i < b; ++i) {
    const size_t n = static_cast<size_t>(t * h);
    // Cannot fail: the span has exactly t * h values.
    EncodeRows(TensorCodec::kFp8E4M3,
               absl::MakeConstSpan(f[i].data_ptr<float>(), n),
               static_cast<size_t>(t), static_cast<size_t>(h), &row)
        .IgnoreError();
    std::memcpy(out[i].data_ptr(), row.data(), bytes);
  }
  return out.to(x.device());
}
#else
torch::Tensor EncodeFp8(const torch::Tensor& x) {
  torch::Tensor f = x.to(torch::kFloat);
  torch::Tensor finite_abs =
      torch::where(torch::isfinite(f), f.abs(), torch::zeros_like(f));
  torch::Tensor amax = std::get<0>(finite_abs.max(-1));  // [B, T]
  // Tensor / tensor: a true division on CUDA (a scalar divisor would be
  // turned into a multiplication by its reciprocal, off by an ulp).
  torch::Tensor scale = amax / torch::full_like(amax, kE4M3Max);
  torch::Tensor safe = torch::where(scale == 0, torch::ones_like(scale), scale);
  torch::Tensor y = (f / safe.unsqueeze(-1)).clamp(-kE4M3Max, kE4M3Max);
  torch::Tensor codes = y.to(at::kFloat8_e4m3fn).view(torch::kByte);
  return torch::cat({AsBytes(scale.unsqueeze(-1)), AsBytes(codes)}, 1);
}
#endif

}  // namespace

absl::StatusOr<torch::Tensor> EncodeLatents(const torch::Tensor& x,
                                            TensorCodec codec) {
  if (!x.defined() || x.dim() != 3 || !x.is_floating_point()) {
    return absl::InvalidArgumentError(
        "EncodeLatents needs a floating-point [B, T, H] tensor");
  }
  return GuardTorch("encoding latents", [&]() -> absl::StatusOr<torch::Tensor> {
    torch::NoGradGuard no_grad;
    switch (codec) {
      case TensorCodec::kF32:
        return AsBytes(x.to(torch::kFloat));
      case TensorCodec::kBF16:
        return AsBytes(x.to(torch::kBFloat16));
      case TensorCodec::kF16:
        // bf16 -> f16 goes through float32 exactly, then rounds once.
        return AsBytes(x.to(torch::kFloat).to(torch::kHalf));
      case TensorCodec::kFp8E4M3:
#ifdef LFT_TORCH_HAS_FP8
        return EncodeFp8(x);
#else
        return EncodeFp8OnHost(x);
#endif
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown codec ", static_cast<int>(codec)));
  });
}

absl::StatusOr<torch::Tensor> DecodeLatents(const torch::Tensor& encoded,
                                            TensorCodec codec, int64_t t,
                                            int64_t h) {
  const int64_t want = static_cast<int64_t>(
      EncodedBytes(codec, static_cast<size_t>(t), static_cast<size_t>(h)));
  if (!encoded.defined() || encoded.dim() != 2 ||
      encoded.scalar_type() != torch::kByte || encoded.size(1) != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("DecodeLatents needs uint8 [B, ", want, "] for ",
                     TensorCodecName(codec), " [", t, ", ", h, "]"));
  }
  return GuardTorch("decoding latents", [&]() -> absl::StatusOr<torch::Tensor> {
    torch::NoGradGuard no_grad;
    const int64_t b = encoded.size(0);
    torch::Tensor e = encoded.contiguous();
    switch (codec) {
      case TensorCodec::kF32:
        return e.view(torch::kFloat).view({b, t, h}).clone();
      case TensorCodec::kBF16:
        return e.view(torch::kBFloat16).view({b, t, h}).to(torch::kFloat);
      case TensorCodec::kF16:
        return e.view(torch::kHalf).view({b, t, h}).to(torch::kFloat);
      case TensorCodec::kFp8E4M3: {
        // Scales are float32 at byte offsets 0, 4, ...: a byte view of
        // each row's first 4 t bytes.
        torch::Tensor scales =
            e.narrow(1, 0, 4 * t).contiguous().view(torch::kFloat);  // [B, t]
        torch::Tensor codes = e.narrow(1, 4 * t, t * h).contiguous();
#ifdef LFT_TORCH_HAS_FP8
        torch::Tensor values =
            codes.view(at::kFloat8_e4m3fn).to(torch::kFloat).view({b, t, h});
#else
        static const torch::Tensor table = [] {
          torch::Tensor v = torch::empty({256}, torch::kFloat);
          for (int i = 0; i < 256; ++i) {
            v[i] = E4M3ToFloat(static_cast<uint8_t>(i));
          }
          return v;
        }();
        torch::Tensor values =
            table.to(e.device()).index({codes.to(torch::kLong)}).view({b, t, h});
#endif
        return values * scales.unsqueeze(-1);
      }
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown codec ", static_cast<int>(codec)));
  });
}

}  // namespace lft
