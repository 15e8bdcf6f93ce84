#include "worker/model/pair_batch.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/tensor_codec.h"

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

}  // namespace lft
