// See device_pair_batch.h.
#include "worker/model/device_pair_batch.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/model/device_latent_codec.h"
#include "worker/model/torch_guard.h"

namespace lft {

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
