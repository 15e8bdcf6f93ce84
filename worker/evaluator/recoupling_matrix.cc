// Recoupling-ratio matrix: one teacher pass over the held-out tokens keeps
// the valid rows of every hidden state h_0..h_L ([N, H] float32 each, N <=
// max_tokens, h_L taken before the final LayerNorm); then for each of the
// L (L + 1) / 2 blocks the ratio is computed from the two row sets
// (RecouplingRatioOfRows: cost by cdist in float64, Hungarian or Sinkhorn).
// Memory is (L + 1) * N * H floats; time is dominated by the O(N^3)
// assignments.
#include "worker/evaluator/recoupling_matrix.h"

#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/eval_metrics.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/png_writer.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

nlohmann::json MatrixJson(const std::vector<std::vector<double>>& m) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : m) {
    nlohmann::json r = nlohmann::json::array();
    for (double v : row) {
      if (std::isnan(v)) {
        r.push_back(nullptr);
      } else {
        r.push_back(v);
      }
    }
    rows.push_back(r);
  }
  return rows;
}

absl::StatusOr<RecouplingMatrix> Compute(const GptNeoX& teacher,
                                         const HeldOutSet& heldout,
                                         const RecouplingMatrixOptions& o) {
  if (o.max_tokens < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "recoupling matrix: max_tokens ", o.max_tokens, " must be at least 2"));
  }
  const int64_t L = teacher.config().num_hidden_layers;
  const int64_t H = teacher.config().hidden_size;
  const int64_t V = teacher.config().vocab_size;
  const int64_t T = heldout.sequence_length;
  torch::NoGradGuard ng;
  std::vector<std::vector<torch::Tensor>> pieces(L + 1);
  int64_t count = 0;
  const int64_t total = static_cast<int64_t>(heldout.sequences.size());
  const int64_t bs = std::max<int64_t>(1, o.batch_sequences);
  for (int64_t first = 0; first < total && count < o.max_tokens; first += bs) {
    const int64_t b = std::min(bs, total - first);
    torch::Tensor ids = torch::empty({b, T}, torch::kLong);
    torch::Tensor mask = torch::empty({b, T}, torch::kBool);
    auto ia = ids.accessor<int64_t, 2>();
    auto ma = mask.accessor<bool, 2>();
    for (int64_t i = 0; i < b; ++i) {
      const PackedSequence& s = heldout.sequences[first + i];
      for (int64_t j = 0; j < T; ++j) {
        if (s.tokens[j] < 0 || s.tokens[j] >= V) {
          return absl::InvalidArgumentError(
              absl::StrCat("held-out token id ", s.tokens[j],
                           " is outside the teacher's vocabulary of ", V));
        }
        ia[i][j] = s.tokens[j];
        ma[i][j] = s.mask[j] != 0;
      }
    }
    const torch::Tensor flat = mask.reshape({-1});
    const int64_t valid = flat.sum().item<int64_t>();
    const int64_t take = std::min(valid, o.max_tokens - count);
    if (take <= 0) continue;
    torch::Tensor h = teacher.Embed(ids.to(teacher.options().device));
    for (int64_t layer = 0; layer <= L; ++layer) {
      if (layer > 0) h = teacher.RunLayers(h, layer - 1, layer);
      torch::Tensor rows = h.to(torch::kCPU, torch::kFloat)
                               .reshape({-1, H})
                               .index({flat})
                               .narrow(0, 0, take)
                               .clone();
      pieces[layer].push_back(rows);
    }
    count += take;
  }
  if (count < 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "recoupling matrix needs at least 2 valid held-out tokens, got ",
        count));
  }
  std::vector<torch::Tensor> states;
  for (auto& p : pieces) states.push_back(torch::cat(p));

  RecouplingMatrix out;
  out.num_layers = L;
  out.tokens = count;
  out.solver = o.sinkhorn ? "sinkhorn" : "hungarian";
  const double nan = std::numeric_limits<double>::quiet_NaN();
  out.ratio.assign(L, std::vector<double>(L + 1, nan));
  out.angular_distance = out.ratio;
  out.block_influence = out.ratio;
  for (int64_t m = 0; m < L; ++m) {
    for (int64_t n = m + 1; n <= L; ++n) {
      LFT_ASSIGN_OR_RETURN(
          out.ratio[m][n],
          RecouplingRatioOfRows(states[m], states[n], !o.sinkhorn,
                                o.sinkhorn_options));
      const BlockSignals s = ComputeBlockSignals(
          states[m].unsqueeze(0), states[n].unsqueeze(0), torch::Tensor());
      out.angular_distance[m][n] = s.angular_distance;
      out.block_influence[m][n] = s.block_influence;
    }
    if (o.progress) o.progress(m);
  }
  return out;
}

}  // namespace

std::string RecouplingMatrix::FormatTable() const {
  std::string s = absl::StrFormat(
      "recoupling ratio R(m, n) of %s over %d tokens (%s); rows m, columns "
      "n\n\n   m\\n",
      teacher, tokens, solver);
  for (int64_t n = 1; n <= num_layers; ++n)
    absl::StrAppendFormat(&s, " %5d", n);
  s += "\n";
  for (int64_t m = 0; m < num_layers; ++m) {
    absl::StrAppendFormat(&s, "%6d", m);
    for (int64_t n = 1; n <= num_layers; ++n) {
      if (n <= m) {
        s += "     .";
      } else {
        absl::StrAppendFormat(&s, " %5.3f", ratio[m][n]);
      }
    }
    s += "\n";
  }
  return s;
}

std::string RecouplingMatrix::ToJson() const {
  nlohmann::json j;
  j["format"] = "lft-recoupling-matrix-1";
  j["teacher"] = teacher;
  j["num_layers"] = num_layers;
  j["tokens"] = tokens;
  j["solver"] = solver;
  j["ratio"] = MatrixJson(ratio);
  j["angular_distance"] = MatrixJson(angular_distance);
  j["block_influence"] = MatrixJson(block_influence);
  return j.dump(1) + "\n";
}

std::string RecouplingMatrix::RenderHeatmapPng() const {
  const int L = static_cast<int>(num_layers);
  const int cell = std::max(8, std::min(28, 560 / std::max(1, L)));
  const int left = 50, top = 50;
  const int grid = cell * L;
  const int lh = std::max(100, grid);  // legend bar height
  RgbImage img(left + grid + 140, top + std::max(grid, lh) + 60);
  img.Text(10, 10,
           absl::StrFormat("recoupling ratio R(m, n), %d tokens, %s", tokens,
                           solver),
           0, 0, 0);
  img.Text(left + grid / 2 - 3, top - 14, "n", 0, 0, 0);
  img.Text(8, top + grid / 2 - 3, "m", 0, 0, 0);
  const int label_every = std::max(1, 14 / cell + 1);
  for (int m = 0; m < L; ++m) {
    for (int n = 1; n <= L; ++n) {
      const int x = left + (n - 1) * cell, y = top + m * cell;
      uint8_t r = 235, g = 235, b = 235;
      if (n > m && !std::isnan(ratio[m][n]))
        ColorScale(ratio[m][n], &r, &g, &b);
      img.FillRect(x, y, x + cell - 2, y + cell - 2, r, g, b);
    }
    if (m % label_every == 0) {
      const std::string t = absl::StrCat(m);
      img.Text(left - 6 - RgbImage::TextWidth(t), top + m * cell + cell / 2 - 3,
               t, 0, 0, 0);
    }
  }
  for (int n = 1; n <= L; ++n) {
    if ((n - 1) % label_every != 0 && n != L) continue;
    const std::string t = absl::StrCat(n);
    img.Text(left + (n - 1) * cell + cell / 2 - RgbImage::TextWidth(t) / 2,
             top + grid + 4, t, 0, 0, 0);
  }
  // Colour-scale legend: R from 0 (bottom) to 1 (top).
  const int lx = left + grid + 30;
  for (int i = 0; i < lh; ++i) {
    uint8_t r, g, b;
    ColorScale(1.0 - static_cast<double>(i) / (lh - 1), &r, &g, &b);
    img.Line(lx, top + i, lx + 18, top + i, r, g, b);
  }
  for (int i = 0; i <= 4; ++i) {
    const double v = 1.0 - i * 0.25;
    const int y = top + static_cast<int>(i * (lh - 1) / 4.0);
    img.Line(lx + 18, y, lx + 22, y, 0, 0, 0);
    img.Text(lx + 26, y - 3, absl::StrFormat("%.2f", v), 0, 0, 0);
  }
  img.Text(lx, top - 14, "R", 0, 0, 0);
  return img.EncodePng();
}

absl::StatusOr<RecouplingMatrix> ComputeRecouplingMatrix(
    const GptNeoX& teacher, const HeldOutSet& heldout,
    const RecouplingMatrixOptions& options) {
  return GuardTorch("recoupling matrix",
                    [&]() -> absl::StatusOr<RecouplingMatrix> {
                      return Compute(teacher, heldout, options);
                    });
}

}  // namespace lft
