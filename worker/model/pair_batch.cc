// See pair_batch.h.
#include "worker/model/pair_batch.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/tensor_codec.h"
#include "worker/model/device_latent_codec.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

bool Reusable(const torch::Tensor& t, at::IntArrayRef shape) {
  return t.defined() && t.device().is_cpu() &&
         t.scalar_type() == torch::kFloat && t.is_contiguous() &&
         t.sizes() == shape;
}

}  // namespace

absl::Status AssemblePairBatch(absl::Span<const LatentPairRecord> pairs,
                               int64_t hidden, PairBatch* out) {
  if (pairs.empty()) {
    return absl::InvalidArgumentError("a batch needs at least one pair");
  }
  int64_t max_tokens = 0;
  for (const LatentPairRecord& p : pairs) {
    if (p.hidden != static_cast<uint32_t>(hidden)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pair (shard ", p.shard, ", sequence ", p.sequence, ") has width ",
          p.hidden, " but the teacher's is ", hidden));
    }
    max_tokens = std::max<int64_t>(max_tokens, p.tokens);
  }
  const int64_t b = static_cast<int64_t>(pairs.size());
  for (torch::Tensor* t : {&out->x0, &out->x1}) {
    if (Reusable(*t, {b, max_tokens, hidden})) {
      t->zero_();
    } else {
      *t = torch::zeros({b, max_tokens, hidden});
    }
  }
  if (Reusable(out->mask, {b, max_tokens})) {
    out->mask.zero_();
  } else {
    out->mask = torch::zeros({b, max_tokens});
  }
  out->padded = false;
  for (int64_t i = 0; i < b; ++i) {
    const LatentPairRecord& p = pairs[i];
    const size_t n = static_cast<size_t>(p.tokens) * hidden;
    LFT_RETURN_IF_ERROR(
        DecodeRows(p.codec, p.x0, p.tokens, hidden,
                   absl::MakeSpan(out->x0[i].data_ptr<float>(), n)));
    LFT_RETURN_IF_ERROR(
        DecodeRows(p.codec, p.x1, p.tokens, hidden,
                   absl::MakeSpan(out->x1[i].data_ptr<float>(), n)));
    out->mask[i].narrow(0, 0, p.tokens).fill_(1.0);
    out->padded |= static_cast<int64_t>(p.tokens) < max_tokens;
  }
  return absl::OkStatus();
}

bool SameShape(absl::Span<const LatentPairRecord> pairs) {
  for (const LatentPairRecord& p : pairs) {
    if (p.tokens != pairs[0].tokens || p.hidden != pairs[0].hidden ||
        p.codec != pairs[0].codec) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<DevicePairBatch> AssemblePairsOnDevice(
    absl::Span<const LatentPairRecord> pairs, int64_t hidden,
    const torch::Device& device) {
  if (pairs.empty() || !SameShape(pairs)) {
    return absl::InvalidArgumentError(
        "AssemblePairsOnDevice needs pairs of one length, width and codec");
  }
  const LatentPairRecord& first = pairs[0];
  if (first.hidden != static_cast<uint32_t>(hidden)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pairs have width ", first.hidden, ", the layer ", hidden));
  }
  const int64_t b = static_cast<int64_t>(pairs.size());
  const int64_t t = first.tokens;
  const size_t bytes = EncodedBytes(first.codec, static_cast<size_t>(t),
                                    static_cast<size_t>(hidden));
  for (const LatentPairRecord& p : pairs) {
    if (p.x0.size() != bytes || p.x1.size() != bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "pair (shard ", p.shard, ", sequence ", p.sequence, ") has ",
          p.x0.size(), "/", p.x1.size(), " payload bytes, expected ", bytes));
    }
  }
  return GuardTorch(
      "assembling a batch", [&]() -> absl::StatusOr<DevicePairBatch> {
        torch::NoGradGuard no_grad;
        const bool pin = device.is_cuda();
        torch::Tensor host = torch::empty(
            {2, b, static_cast<int64_t>(bytes)},
            torch::TensorOptions().dtype(torch::kByte).pinned_memory(pin));
        uint8_t* base = host.data_ptr<uint8_t>();
        // A 2048 x 1024 bf16 pair is 8 MiB: copy with a few threads.
        const int64_t threads = std::min<int64_t>(4, b);
        std::vector<std::thread> pool;
        for (int64_t w = 0; w < threads; ++w) {
          pool.emplace_back([&, w] {
            for (int64_t i = w; i < b; i += threads) {
              std::memcpy(base + i * bytes, pairs[i].x0.data(), bytes);
              std::memcpy(base + (b + i) * bytes, pairs[i].x1.data(), bytes);
            }
          });
        }
        for (std::thread& th : pool) th.join();
        torch::Tensor dev = host.to(device, /*non_blocking=*/pin);
        DevicePairBatch out;
        LFT_ASSIGN_OR_RETURN(out.x0,
                             DecodeLatents(dev[0], first.codec, t, hidden));
        LFT_ASSIGN_OR_RETURN(out.x1,
                             DecodeLatents(dev[1], first.codec, t, hidden));
        return out;
      });
}

}  // namespace lft
