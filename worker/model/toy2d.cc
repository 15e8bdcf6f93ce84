// 2D toy study; see toy2d.h.
#include "worker/model/toy2d.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "worker/model/flow_layer.h"
#include "worker/model/png_writer.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

constexpr int64_t kTimeDim = 16;

struct VelocityMlpImpl : torch::nn::Module {
  explicit VelocityMlpImpl(int64_t hidden) {
    net = register_module(
        "net", torch::nn::Sequential(
                   torch::nn::Linear(2 + kTimeDim, hidden), torch::nn::SiLU(),
                   torch::nn::Linear(hidden, hidden), torch::nn::SiLU(),
                   torch::nn::Linear(hidden, 2)));
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t) {
    return net->forward(torch::cat({x, TimestepEmbedding(t, kTimeDim)}, 1));
  }
  torch::nn::Sequential net{nullptr};
};
TORCH_MODULE(VelocityMlp);

// Returns {x0, x1, blob sign}.
std::array<torch::Tensor, 3> SamplePairs(int64_t n, at::Generator& gen) {
  torch::Tensor s =
      at::randint(0, 2, {n}, gen, torch::TensorOptions().dtype(torch::kLong))
              .to(torch::kFloat) *
          2 -
      1;
  torch::Tensor noise = at::normal(0.0, 0.25, {n, 2}, gen).to(torch::kFloat);
  torch::Tensor x0 = noise + torch::stack({torch::full({n}, -2.0), s}, 1);
  torch::Tensor x1 = x0 + torch::stack({torch::full({n}, 4.0), -2 * s}, 1);
  return {x0, x1, s};
}

}  // namespace

absl::StatusOr<Toy2dResult> RunToy2d(const Toy2dOptions& o) {
  FlowLossOptions lo;
  if (o.method == "sfm") {
    lo.method = FlowMethod::kSfm;
  } else if (o.method == "fw") {
    lo.method = FlowMethod::kFw;
  } else if (o.method == "hybrid") {
    lo.method = FlowMethod::kHybrid;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "toy2d: method \"", o.method, "\" is not sfm, fw or hybrid"));
  }
  lo.fw_steps = o.fw_steps;
  lo.alpha = o.alpha;
  lo.rule = StepRule::kMidpoint;
  return GuardTorch("RunToy2d", [&]() -> absl::StatusOr<Toy2dResult> {
    torch::manual_seed(o.seed);
    VelocityMlp net(o.hidden);
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(o.lr));
    auto gen = at::detail::createCPUGenerator(o.seed + 1);
    VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
      return net->forward(x, t);
    };
    Toy2dResult r;
    r.method =
        o.method == "hybrid" ? absl::StrCat("hybrid a=", o.alpha) : o.method;
    double ema = 0;
    for (int64_t step = 0; step < o.train_steps; ++step) {
      auto [x0, x1, s] = SamplePairs(o.batch, gen);
      // Cosine decay to 10% keeps the end of training stable.
      const double lr =
          o.lr *
          (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * step / o.train_steps)));
      static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options())
          .lr(lr);
      opt.zero_grad();
      torch::Tensor loss = FlowLoss(u, x0, x1, torch::Tensor(), lo, gen);
      loss.backward();
      opt.step();
      const double l = loss.item<double>();
      ema = step == 0 ? l : 0.98 * ema + 0.02 * l;
    }
    r.final_loss = ema;
    torch::NoGradGuard ng;
    auto egen = at::detail::createCPUGenerator(o.seed + 1000);
    auto [x0, x1, s] = SamplePairs(o.eval_points, egen);
    std::vector<torch::Tensor> path;
    torch::Tensor xh =
        Integrate(u, x0, UniformGrid(o.eval_k), StepRule::kMidpoint, &path);
    r.endpoint_error = (xh - x1).norm(2, 1).mean().item<double>();
    // Targets: blob centre (2, -s); the wrong one is (2, s).
    torch::Tensor right =
        torch::stack({torch::full({o.eval_points}, 2.0), -s}, 1);
    torch::Tensor wrong =
        torch::stack({torch::full({o.eval_points}, 2.0), s}, 1);
    r.swap_rate = ((xh - wrong).norm(2, 1) < (xh - right).norm(2, 1))
                      .to(torch::kDouble)
                      .mean()
                      .item<double>();
    torch::Tensor length = torch::zeros({o.eval_points});
    for (size_t i = 1; i < path.size(); ++i)
      length += (path[i] - path[i - 1]).norm(2, 1);
    r.path_ratio =
        (length / (xh - x0).norm(2, 1).clamp_min(1e-6)).mean().item<double>();
    for (int64_t p = 0; p < std::min(o.plot_points, o.eval_points); ++p) {
      std::vector<std::array<double, 2>> traj;
      for (const torch::Tensor& x : path) {
        traj.push_back({x[p][0].item<double>(), x[p][1].item<double>()});
      }
      r.trajectories.push_back(traj);
      r.blob.push_back(s[p].item<double>() > 0 ? 1 : -1);
    }
    return r;
  });
}

absl::Status WriteToy2dPng(const std::vector<Toy2dResult>& results,
                           const std::string& path) {
  const int panel = 320, gap = 10;
  const int width = static_cast<int>(results.size()) * (panel + gap) + gap;
  RgbImage img(width, panel + 2 * gap);
  for (size_t k = 0; k < results.size(); ++k) {
    const int ox = gap + static_cast<int>(k) * (panel + gap), oy = gap;
    // Data range [-3.5, 3.5]^2, y up.
    auto px = [&](double x) { return ox + (x + 3.5) / 7.0 * panel; };
    auto py = [&](double y) { return oy + (3.5 - y) / 7.0 * panel; };
    for (int i = 0; i <= panel; ++i) {  // frame
      img.Set(ox + i, oy, 0, 0, 0);
      img.Set(ox + i, oy + panel, 0, 0, 0);
      img.Set(ox, oy + i, 0, 0, 0);
      img.Set(ox + panel, oy + i, 0, 0, 0);
    }
    for (double y : {1.0, -1.0}) {
      img.Dot(px(-2), py(y), 12, 225, 225, 225);
      img.Dot(px(2), py(y), 12, 225, 225, 225);
    }
    const Toy2dResult& r = results[k];
    for (size_t t = 0; t < r.trajectories.size(); ++t) {
      const auto& tr = r.trajectories[t];
      const uint8_t cr = r.blob[t] > 0 ? 220 : 30,
                    cb = r.blob[t] > 0 ? 30 : 220;
      for (size_t i = 1; i < tr.size(); ++i) {
        img.Line(px(tr[i - 1][0]), py(tr[i - 1][1]), px(tr[i][0]), py(tr[i][1]),
                 cr, 40, cb);
      }
      img.Dot(px(tr.front()[0]), py(tr.front()[1]), 2, cr, 40, cb);
      img.Dot(px(tr.back()[0]), py(tr.back()[1]), 3, 0, 0, 0);
    }
  }
  return img.WritePng(path);
}

}  // namespace lft
