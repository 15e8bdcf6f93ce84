// Fused AdaLN and rotary operations (worker/kernels/fused_ops.h): the
// autograd functions against the LibTorch expressions they replace, on the
// CPU through the functions' LibTorch stand-in (wiring: saved tensors,
// shapes, which gradient goes where) and on CUDA through the kernels
// (*Cuda* cases, under the gpu label; they skip without CUDA or without
// the kernels in the build).
#include "worker/kernels/fused_ops.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "worker/model/adamw.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"

namespace lft {
namespace {

class ModeScope {
 public:
  explicit ModeScope(FusedOpsMode m) : saved_(GetFusedOpsMode()) {
    SetFusedOpsMode(m);
  }
  ~ModeScope() { SetFusedOpsMode(saved_); }

 private:
  FusedOpsMode saved_;
};

torch::Tensor Normal(std::vector<int64_t> shape, uint64_t seed,
                     torch::ScalarType type = torch::kDouble) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 1.0, shape, gen).to(type);
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.cpu().to(torch::kDouble) - b.cpu().to(torch::kDouble))
      .abs()
      .max()
      .item<double>();
}

double MaxAbs(const torch::Tensor& a) {
  return a.cpu().to(torch::kDouble).abs().max().item<double>();
}

struct OpRun {
  torch::Tensor y;
  std::vector<torch::Tensor> grads;
};

// y = f(inputs) and the gradients of <y, w> for a fixed random w.
template <typename F>
OpRun Evaluate(FusedOpsMode mode, std::vector<torch::Tensor> inputs, F f,
               const torch::Tensor& w) {
  ModeScope scope(mode);
  for (auto& t : inputs) t = t.detach().clone().requires_grad_(true);
  OpRun r;
  r.y = f(inputs);
  (r.y * w.to(r.y.device(), r.y.scalar_type())).sum().backward();
  for (auto& t : inputs) r.grads.push_back(t.grad());
  r.y = r.y.detach();
  return r;
}

void ExpectSameRun(const OpRun& got, const OpRun& want, double tol) {
  EXPECT_LE(MaxDiff(got.y, want.y), tol * (1 + MaxAbs(want.y)));
  ASSERT_EQ(got.grads.size(), want.grads.size());
  for (size_t i = 0; i < want.grads.size(); ++i) {
    ASSERT_TRUE(got.grads[i].defined()) << "input " << i;
    EXPECT_EQ(got.grads[i].sizes(), want.grads[i].sizes()) << "input " << i;
    EXPECT_LE(MaxDiff(got.grads[i], want.grads[i]),
              tol * (1 + MaxAbs(want.grads[i])))
        << "input " << i;
    EXPECT_GT(MaxAbs(want.grads[i]), 0.0) << "input " << i;
  }
}

TEST(FusedOpsTest, ModulateFunctionMatchesTheLibTorchExpression) {
  // scale and shift as the flow layer passes them: [B, 1, H] views.
  torch::Tensor a = Normal({3, 7, 16}, 1), s = Normal({3, 1, 16}, 2),
                c = Normal({3, 1, 16}, 3), w = Normal({3, 7, 16}, 4);
  auto f = [](std::vector<torch::Tensor>& in) {
    return Modulate(in[0], in[1], in[2]);
  };
  OpRun want = Evaluate(FusedOpsMode::kOff, {a, s, c}, f, w);
  OpRun got = Evaluate(FusedOpsMode::kAlways, {a, s, c}, f, w);
  ExpectSameRun(got, want, 1e-12);
}

TEST(FusedOpsTest, GatedBranchFunctionMatchesWithAndWithoutBase) {
  torch::Tensor base = Normal({2, 5, 8}, 5), g = Normal({2, 1, 8}, 6),
                m = Normal({2, 5, 8}, 7), w = Normal({2, 5, 8}, 8);
  auto with_base = [](std::vector<torch::Tensor>& in) {
    return GatedBranch(in[0], in[1], in[2]);
  };
  ExpectSameRun(Evaluate(FusedOpsMode::kAlways, {base, g, m}, with_base, w),
                Evaluate(FusedOpsMode::kOff, {base, g, m}, with_base, w),
                1e-12);
  auto gate_only = [](std::vector<torch::Tensor>& in) {
    return GatedBranch(torch::Tensor(), in[0], in[1]);
  };
  ExpectSameRun(Evaluate(FusedOpsMode::kAlways, {g, m}, gate_only, w),
                Evaluate(FusedOpsMode::kOff, {g, m}, gate_only, w), 1e-12);
}

TEST(FusedOpsTest, BiasLinearFunctionMatchesAddmm) {
  torch::Tensor x = Normal({7, 16}, 21, torch::kDouble),
                w = Normal({24, 16}, 22, torch::kDouble),
                b = Normal({24}, 23, torch::kDouble),
                r = Normal({7, 24}, 24, torch::kDouble);
  auto f = [](std::vector<torch::Tensor>& in) {
    return BiasLinear(in[0], in[1], in[2]);
  };
  ExpectSameRun(Evaluate(FusedOpsMode::kAlways, {x, w, b}, f, r),
                Evaluate(FusedOpsMode::kOff, {x, w, b}, f, r), 1e-12);
  // Without autograd it is the plain addmm.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(BiasLinear(x, w, b), torch::addmm(b, x, w.t())));
}

TEST(FusedOpsTest, LayerNormFunctionMatchesLayerNorm) {
  torch::Tensor x = Normal({3, 7, 16}, 61), w = Normal({16}, 62),
                b = Normal({16}, 63), r = Normal({3, 7, 16}, 64);
  auto f = [](std::vector<torch::Tensor>& in) {
    return LayerNorm(in[0], in[1], in[2], 1e-5);
  };
  ExpectSameRun(Evaluate(FusedOpsMode::kAlways, {x, w, b}, f, r),
                Evaluate(FusedOpsMode::kOff, {x, w, b}, f, r), 1e-12);
  // Without autograd, and on LibTorch's route, it is layer_norm itself.
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(LayerNorm(x, w, b, 1e-5),
                           torch::layer_norm(x, {16}, w, b, 1e-5)));
}

// The gradients of x and of the four weights of two evaluations of a
// LayerNorm and a biased linear layer that share them (as a training
// step's evaluations share the layer's), backward once. With sinks, the
// weights' gradients are read from them, less the values they started
// from (after Finish: on CUDA the bias and LayerNorm sums of the two
// evaluations wait in per-chunk partials until then); ln_adjacent puts the
// LayerNorm's two sinks side by side in one buffer, as the trainer's are.
struct SinkRun {
  std::vector<torch::Tensor> grads;  // x, w, b, ln_w, ln_b
  std::vector<bool> autograd_got;    // whether w, b, ln_w, ln_b got .grad
};

SinkRun TwoEvaluations(FusedOpsMode mode, torch::Device device,
                       torch::ScalarType type, int64_t rows, int64_t in,
                       int64_t out, bool sinks, bool ln_adjacent = false) {
  ModeScope mode_scope(mode);
  auto make = [&](std::vector<int64_t> shape, uint64_t seed, double scale,
                  double offset) {
    return (Normal(shape, seed) * scale + offset)
        .to(device, type)
        .requires_grad_(true);
  };
  torch::Tensor x = make({rows, in}, 51, 1, 0);
  std::vector<torch::Tensor> weights = {
      make({out, in}, 52, 1, 0), make({out}, 53, 1, 0), make({in}, 54, 0.1, 1),
      make({in}, 55, 0.1, 0)};
  std::vector<torch::Tensor> starts, held;
  std::optional<ScopedWeightGradSinks> scope;
  if (sinks) {
    torch::Tensor ln = (Normal({2 * in}, 56) * 0.01).to(device, type);
    for (size_t i = 0; i < weights.size(); ++i) {
      torch::Tensor start =
          i >= 2 && ln_adjacent
              ? ln.narrow(0, (i - 2) * in, in)
              : (Normal(weights[i].sizes().vec(), 60 + i) * 0.01)
                    .to(device, type);
      starts.push_back(start.clone());
      held.push_back(start);
    }
    std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
    for (size_t i = 0; i < weights.size(); ++i)
      pairs.emplace_back(weights[i], held[i]);
    scope.emplace(pairs);
  }
  auto f = [&](const torch::Tensor& v) {
    return BiasLinear(LayerNorm(v, weights[2], weights[3], 1e-5), weights[0],
                      weights[1]);
  };
  torch::Tensor y = f(x) + f(x * 0.5);
  (y * Normal({rows, out}, 57).to(device, type)).sum().backward();
  if (scope) scope->Finish();
  SinkRun r;
  r.grads.push_back(x.grad());
  for (size_t i = 0; i < weights.size(); ++i) {
    r.autograd_got.push_back(weights[i].grad().defined());
    r.grads.push_back(sinks ? held[i] - starts[i] : weights[i].grad());
  }
  return r;
}

TEST(FusedOpsTest, WeightGradSinksTakeTheGradientsOfTheWeightsTheyName) {
  const SinkRun want = TwoEvaluations(FusedOpsMode::kOff, torch::kCPU,
                                      torch::kDouble, 9, 16, 24, false);
  for (bool adjacent : {false, true}) {
    const SinkRun got =
        TwoEvaluations(FusedOpsMode::kAlways, torch::kCPU, torch::kDouble, 9,
                       16, 24, true, adjacent);
    for (size_t i = 0; i < want.grads.size(); ++i) {
      ASSERT_TRUE(got.grads[i].defined()) << i;
      EXPECT_LE(MaxDiff(got.grads[i], want.grads[i]),
                1e-12 * (1 + MaxAbs(want.grads[i])))
          << "gradient " << i << " adjacent " << adjacent;
      EXPECT_GT(MaxAbs(want.grads[i]), 0.0) << i;
    }
    // Autograd got none of them.
    for (size_t i = 0; i < got.autograd_got.size(); ++i) {
      EXPECT_FALSE(got.autograd_got[i]) << "weight " << i;
    }
  }
  // LibTorch's route ignores the sinks: the gradients stay with autograd.
  const SinkRun off = TwoEvaluations(FusedOpsMode::kOff, torch::kCPU,
                                     torch::kDouble, 9, 16, 24, true);
  for (size_t i = 0; i < off.autograd_got.size(); ++i) {
    EXPECT_TRUE(off.autograd_got[i]) << "weight " << i;
    EXPECT_EQ(MaxAbs(off.grads[i + 1]), 0.0) << "sink " << i;
  }
}

TEST(FusedOpsTest, ScopedWeightGradSinksNestAndCheckTheirSinks) {
  torch::Tensor w = torch::zeros({4, 8}), v = torch::zeros({8});
  torch::Tensor sw = torch::zeros({4, 8}), sv = torch::zeros({8});
  EXPECT_FALSE(ScopedWeightGradSinks::SinkOf(w).defined());
  {
    const ScopedWeightGradSinks outer({{w, sw}});
    EXPECT_TRUE(ScopedWeightGradSinks::SinkOf(w).is_same(sw));
    {
      const ScopedWeightGradSinks inner({{v, sv}});
      EXPECT_TRUE(ScopedWeightGradSinks::SinkOf(v).is_same(sv));
      EXPECT_FALSE(ScopedWeightGradSinks::SinkOf(w).defined());
      // The same values in another tensor are another weight.
      EXPECT_FALSE(ScopedWeightGradSinks::SinkOf(v.clone()).defined());
    }
    EXPECT_TRUE(ScopedWeightGradSinks::SinkOf(w).is_same(sw));
  }
  EXPECT_FALSE(ScopedWeightGradSinks::SinkOf(w).defined());
  for (const torch::Tensor& bad :
       {torch::zeros({8, 4}), torch::zeros({4, 8}, torch::kDouble),
        torch::zeros({8, 4}).t(), torch::zeros({4, 8}).requires_grad_(true)}) {
    try {
      const ScopedWeightGradSinks scope({{w, bad}});
      ADD_FAILURE() << "accepted a sink of " << bad.sizes();
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("its weight's shape"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(FusedOpsTest, SolverUpdateFunctionMatchesAddcmul) {
  torch::Tensor x = Normal({3, 5, 8}, 25, torch::kDouble),
                u = Normal({3, 5, 8}, 26, torch::kDouble),
                r = Normal({3, 5, 8}, 27, torch::kDouble);
  const torch::Tensor d = torch::tensor({0.25, -0.5, 1.0}, torch::kDouble);
  auto f = [&](std::vector<torch::Tensor>& in) {
    return SolverUpdate(in[0], d, in[1]);
  };
  ExpectSameRun(Evaluate(FusedOpsMode::kAlways, {x, u}, f, r),
                Evaluate(FusedOpsMode::kOff, {x, u}, f, r), 1e-12);
}

// cos and sin [T, rot] as RotaryTable makes them.
std::pair<torch::Tensor, torch::Tensor> Table(int64_t t, int64_t rot,
                                              torch::ScalarType type,
                                              torch::Device device) {
  torch::Tensor inv = 1.0 / torch::pow(10000.0, torch::arange(0, rot, 2) /
                                                    static_cast<double>(rot));
  torch::Tensor f = torch::outer(torch::arange(t).to(torch::kFloat), inv);
  torch::Tensor emb = torch::cat({f, f}, -1);
  return {emb.cos().to(device, type), emb.sin().to(device, type)};
}

// The attention's use: q, k, v of qkv [B, T, heads, 3, hd], stacked back
// into that shape so that one weight covers all three. head_major: each
// goes through a [B, heads, T, hd] copy first, as the attention's reads do,
// so its gradient arrives with those strides.
OpRun SplitRun(FusedOpsMode mode, torch::ScalarType type, torch::Device device,
               int64_t hd, int64_t rot, bool head_major = false,
               int64_t heads = 3) {
  const int64_t b = 2, t = 9;
  torch::Tensor cos, sin;
  if (rot > 0) std::tie(cos, sin) = Table(t, rot, type, device);
  torch::Tensor qkv = Normal({b, t, heads, 3, hd}, 11).to(device, type);
  torch::Tensor w = Normal({b, t, heads, 3, hd}, 12);
  auto f = [&](std::vector<torch::Tensor>& in) {
    std::vector<torch::Tensor> parts = SplitQkvHeads(in[0], cos, sin, rot);
    EXPECT_EQ(parts.size(), 3u);
    if (head_major) {
      for (auto& p : parts) {
        p = p.permute({0, 2, 1, 3}).contiguous().permute({0, 2, 1, 3});
      }
    }
    return torch::stack(parts, 3);
  };
  return Evaluate(mode, {qkv}, f, w);
}

TEST(FusedOpsTest, SplitQkvHeadsFunctionGivesTheLibTorchBitsInBf16) {
  for (int64_t rot : {0, 4, 16}) {
    for (bool head_major : {false, true}) {
      OpRun want = SplitRun(FusedOpsMode::kOff, torch::kBFloat16, torch::kCPU,
                            16, rot, head_major);
      OpRun got = SplitRun(FusedOpsMode::kAlways, torch::kBFloat16, torch::kCPU,
                           16, rot, head_major);
      EXPECT_TRUE(torch::equal(got.y, want.y)) << "rot " << rot;
      EXPECT_TRUE(torch::equal(got.grads[0], want.grads[0])) << "rot " << rot;
    }
  }
  // The rotation is not the identity: q and k change, v does not.
  OpRun plain =
      SplitRun(FusedOpsMode::kOff, torch::kBFloat16, torch::kCPU, 16, 0);
  OpRun rotated =
      SplitRun(FusedOpsMode::kAlways, torch::kBFloat16, torch::kCPU, 16, 16);
  EXPECT_FALSE(
      torch::equal(rotated.y.narrow(3, 0, 2), plain.y.narrow(3, 0, 2)));
  EXPECT_TRUE(torch::equal(rotated.y.narrow(3, 2, 1), plain.y.narrow(3, 2, 1)));
}

TEST(FusedOpsTest, SplitQkvHeadsRejectsATensorNotShapedAsQkv) {
  for (auto mode : {FusedOpsMode::kOff, FusedOpsMode::kAlways}) {
    ModeScope scope(mode);
    for (auto shape : {std::vector<int64_t>{2, 9, 3, 48},
                       std::vector<int64_t>{2, 9, 3, 2, 16}}) {
      try {
        SplitQkvHeads(torch::zeros(shape), torch::Tensor(), torch::Tensor(), 0);
        ADD_FAILURE() << "accepted " << torch::IntArrayRef(shape);
      } catch (const c10::Error& e) {
        EXPECT_NE(std::string(e.what()).find("[B, T, heads, 3, hd]"),
                  std::string::npos)
            << e.what();
      }
    }
  }
}

NeoXConfig LayerConfig(int64_t hidden, bool parallel) {
  NeoXConfig c;
  c.vocab_size = 32;
  c.hidden_size = hidden;
  c.num_hidden_layers = 1;
  c.num_attention_heads = hidden / 32;
  c.intermediate_size = 4 * hidden;
  c.rotary_pct = 0.25;
  c.use_parallel_residual = parallel;
  return c;
}

// One network evaluation of the flow layer, forward and backward, with
// non-zero AdaLN factors so that every gate and shift carries gradient.
struct VelocityRun {
  torch::Tensor u;
  std::vector<torch::Tensor> grads;  // every parameter, in order
};

VelocityRun Velocity(FusedOpsMode mode, const NeoXConfig& c,
                     torch::ScalarType eval_type, torch::Device device) {
  ModeScope scope(mode);
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 4));
  EXPECT_TRUE(teacher.ok());
  FlowLayerOptions o;
  o.device = device;
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(), o);
  {
    torch::NoGradGuard no_grad;
    const int64_t h = c.hidden_size;
    layer->ada_out()->weight.copy_(
        Normal({6 * h, h}, 9, torch::kFloat).mul_(0.05));
  }
  torch::Tensor x = Normal({2, 24, c.hidden_size}, 2, torch::kFloat).to(device);
  torch::Tensor t = torch::tensor({0.2f, 0.9f}).to(device);
  VelocityRun r;
  r.u = layer->Velocity(x, t, layer->EvalWeights(eval_type));
  torch::Tensor w = Normal(r.u.sizes().vec(), 3).to(device, r.u.scalar_type());
  (r.u * w).sum().backward();
  for (const auto& p : layer->parameters()) r.grads.push_back(p.grad().cpu());
  r.u = r.u.detach().cpu();
  return r;
}

TEST(FusedOpsTest, FlowVelocityThroughTheFunctionsMatchesLibTorch) {
  for (bool parallel : {true, false}) {
    NeoXConfig c = LayerConfig(32, parallel);
    VelocityRun want =
        Velocity(FusedOpsMode::kOff, c, torch::kDouble, torch::kCPU);
    VelocityRun got =
        Velocity(FusedOpsMode::kAlways, c, torch::kDouble, torch::kCPU);
    EXPECT_LE(MaxDiff(got.u, want.u), 1e-12 * (1 + MaxAbs(want.u)));
    ASSERT_EQ(got.grads.size(), want.grads.size());
    for (size_t i = 0; i < want.grads.size(); ++i) {
      EXPECT_LE(MaxDiff(got.grads[i], want.grads[i]),
                1e-10 * (1 + MaxAbs(want.grads[i])))
          << "parameter " << i << " parallel " << parallel;
    }
  }
}

bool HaveKernels() {
  return torch::cuda::is_available() && FusedKernelsBuilt();
}

// Against float64 on the CPU from the same (rounded) inputs: bf16 keeps 8
// bits of mantissa, so 2^-7 of the magnitude; fp32 far tighter.
double Tolerance(torch::ScalarType type) {
  return type == torch::kBFloat16 ? 1.0 / 64 : 2e-5;
}

TEST(FusedOpsCudaTest, ModulateAndGateKernelsMatchFloat64) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    for (auto shape :
         {std::vector<int64_t>{3, 37, 1024}, std::vector<int64_t>{2, 300, 512},
          std::vector<int64_t>{1, 2048, 1024},
          // Widths with fewer row lanes per block in the backward.
          std::vector<int64_t>{2, 40, 2048},
          std::vector<int64_t>{2, 40, 4096}}) {
      const int64_t b = shape[0], h = shape[2];
      torch::Tensor a = Normal(shape, 1, type), s = Normal({b, 1, h}, 2, type),
                    c = Normal({b, 1, h}, 3, type), w = Normal(shape, 4, type);
      auto mod = [](std::vector<torch::Tensor>& in) {
        return Modulate(in[0], in[1], in[2]);
      };
      OpRun want = Evaluate(
          FusedOpsMode::kOff,
          {a.to(torch::kDouble), s.to(torch::kDouble), c.to(torch::kDouble)},
          mod, w);
      OpRun got = Evaluate(FusedOpsMode::kAuto,
                           {a.to(cuda), s.to(cuda), c.to(cuda)}, mod, w);
      SCOPED_TRACE(::testing::Message()
                   << "modulate " << type << " " << shape[1] << "x" << h);
      ExpectSameRun(got, want, Tolerance(type));

      auto gate = [](std::vector<torch::Tensor>& in) {
        return GatedBranch(in[0], in[1], in[2]);
      };
      OpRun want_g = Evaluate(FusedOpsMode::kOff,
                              {c.expand(shape).contiguous().to(torch::kDouble),
                               s.to(torch::kDouble), a.to(torch::kDouble)},
                              gate, w);
      OpRun got_g = Evaluate(
          FusedOpsMode::kAuto,
          {c.expand(shape).contiguous().to(cuda), s.to(cuda), a.to(cuda)}, gate,
          w);
      ExpectSameRun(got_g, want_g, Tolerance(type));

      // As the flow layer passes them: rows of the factors [B, 6, H], read
      // in place through their row stride.
      torch::Tensor f6 = Normal({b, 6, h}, 5, type);
      auto mod6 = [](std::vector<torch::Tensor>& in) {
        const std::vector<torch::Tensor> f = in[1].unsqueeze(2).unbind(1);
        return GatedBranch(in[0], f[2], Modulate(in[0], f[0], f[1]));
      };
      ExpectSameRun(
          Evaluate(FusedOpsMode::kAuto, {a.to(cuda), f6.to(cuda)}, mod6, w),
          Evaluate(FusedOpsMode::kOff,
                   {a.to(torch::kDouble), f6.to(torch::kDouble)}, mod6, w),
          2 * Tolerance(type));
    }
  }
}

// f run by LibTorch in float64 on the CPU against f run with the kernels on
// CUDA copies of the same (rounded) inputs, whose gradient function must
// be `function`: the ops' runs against a reference that has no rounding.
template <typename F>
void ExpectKernelsFollowFloat64(const std::vector<torch::Tensor>& inputs, F f,
                                const torch::Tensor& r, const char* function,
                                double tol) {
  std::vector<torch::Tensor> doubles, on_cuda;
  for (const torch::Tensor& t : inputs) {
    doubles.push_back(t.to(torch::kDouble));
    on_cuda.push_back(t.to(torch::kCUDA));
  }
  OpRun want = Evaluate(FusedOpsMode::kOff, doubles, f, r);
  OpRun got = Evaluate(
      FusedOpsMode::kAuto, on_cuda,
      [&](std::vector<torch::Tensor>& v) {
        torch::Tensor y = f(v);
        EXPECT_NE(y.grad_fn()->name().find(function), std::string::npos)
            << y.grad_fn()->name();
        return y;
      },
      r);
  ExpectSameRun(got, want, tol);
}

// The column-sum kernel behind BiasLinear's bias gradient at the
// trainer's shapes, a row count that leaves a partial chunk, and fp32.
TEST(FusedOpsCudaTest, BiasLinearKernelsMatchFloat64) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    for (auto shape : {std::vector<int64_t>{4096, 1024, 3072},
                       std::vector<int64_t>{37, 64, 40},
                       std::vector<int64_t>{16384, 1024, 1024}}) {
      const int64_t m = shape[0], in = shape[1], n = shape[2];
      torch::Tensor x = Normal({m, in}, 31, type),
                    w = Normal({n, in}, 32, type), b = Normal({n}, 33, type),
                    r = Normal({m, n}, 34, type);
      auto f = [](std::vector<torch::Tensor>& v) {
        return BiasLinear(v[0], v[1], v[2]);
      };
      SCOPED_TRACE(::testing::Message() << "bias linear " << type << " " << m
                                        << "x" << in << "x" << n);
      // Sums over thousands of rows: bf16 inputs, fp32 accumulation.
      ExpectKernelsFollowFloat64(
          {x, w, b}, f, r, "BiasLinearFunction",
          Tolerance(type) * (type == torch::kFloat ? 50 : 1));
    }
  }
}

// The LayerNorm weight and bias gradient kernel: the trainer's shape, a
// row count that leaves a partial chunk, bf16 and fp32.
TEST(FusedOpsCudaTest, LayerNormKernelsMatchFloat64) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    for (auto shape : {std::vector<int64_t>{8, 512, 1024},
                       std::vector<int64_t>{1, 37, 64}}) {
      const int64_t h = shape[2];
      torch::Tensor x = Normal(shape, 71, type) * 2 + 0.5,
                    w = Normal({h}, 72, type) * 0.1 + 1,
                    b = Normal({h}, 73, type), r = Normal(shape, 74, type);
      auto f = [](std::vector<torch::Tensor>& v) {
        return LayerNorm(v[0], v[1], v[2], 1e-5);
      };
      SCOPED_TRACE(::testing::Message() << "layer norm " << type << " "
                                        << torch::IntArrayRef(shape));
      ExpectKernelsFollowFloat64(
          {x, w, b}, f, r, "LayerNormFunction",
          Tolerance(type) * (type == torch::kFloat ? 50 : 1));
    }
  }
}

// The sinks on the GPU: the weight gradient accumulated in the GEMM, the
// bias's and the LayerNorm's sums added in their second pass (one launch
// for the two LayerNorm sinks side by side, two otherwise).
TEST(FusedOpsCudaTest, WeightGradSinksFollowFloat64) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    for (auto shape : {std::vector<int64_t>{4096, 1024, 3072},
                       std::vector<int64_t>{37, 64, 40}}) {
      const SinkRun want =
          TwoEvaluations(FusedOpsMode::kOff, torch::kCPU, torch::kDouble,
                         shape[0], shape[1], shape[2], false);
      for (bool adjacent : {false, true}) {
        const SinkRun got =
            TwoEvaluations(FusedOpsMode::kAuto, cuda, type, shape[0], shape[1],
                           shape[2], true, adjacent);
        SCOPED_TRACE(::testing::Message()
                     << "sinks " << type << " " << torch::IntArrayRef(shape)
                     << " adjacent " << adjacent);
        for (size_t i = 0; i < want.grads.size(); ++i) {
          EXPECT_LE(MaxDiff(got.grads[i], want.grads[i]),
                    Tolerance(type) * (type == torch::kFloat ? 50 : 2) *
                        (1 + MaxAbs(want.grads[i])))
              << "gradient " << i;
        }
        for (size_t i = 0; i < got.autograd_got.size(); ++i) {
          EXPECT_FALSE(got.autograd_got[i]) << "weight " << i;
        }
      }
    }
  }
}

// The column sums and the scale-shift sums go through per-chunk partials
// summed in a fixed order: the same launch repeated between others of other
// shapes (other block and chunk counts) gives the same bits.
// (BiasLinearKernelsMatchFloat64 and ModulateAndGateKernelsMatchFloat64 check
// the values.)
TEST(FusedOpsCudaTest, ChunkedSumsRepeatExactly) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  auto bias_grad = [&](int64_t m, int64_t n, uint64_t seed) {
    torch::Tensor x = Normal({m, 64}, seed, torch::kBFloat16).to(cuda);
    torch::Tensor w = Normal({n, 64}, seed + 1, torch::kBFloat16).to(cuda);
    torch::Tensor b = Normal({n}, seed + 2, torch::kBFloat16).to(cuda);
    b.requires_grad_(true);
    BiasLinear(x, w, b).sum().backward();
    return b.grad().cpu();
  };
  auto scale_grad = [&](int64_t batch, int64_t seq, uint64_t seed) {
    torch::Tensor a =
        Normal({batch, seq, 256}, seed, torch::kBFloat16).to(cuda);
    torch::Tensor s =
        Normal({batch, 1, 256}, seed + 1, torch::kBFloat16).to(cuda);
    torch::Tensor c =
        Normal({batch, 1, 256}, seed + 2, torch::kBFloat16).to(cuda);
    a.requires_grad_(true);
    s.requires_grad_(true);
    c.requires_grad_(true);
    (Modulate(a, s, c) * a.detach()).sum().backward();
    return torch::cat({s.grad().view({-1}), c.grad().view({-1})}).cpu();
  };
  const torch::Tensor bias_first = bias_grad(4096, 3072, 1);
  const torch::Tensor scale_first = scale_grad(3, 700, 4);
  for (int round = 0; round < 3; ++round) {
    bias_grad(37 + round, 40, 7);
    scale_grad(1, 9 + round, 8);
    EXPECT_TRUE(torch::equal(bias_grad(4096, 3072, 1), bias_first)) << round;
    EXPECT_TRUE(torch::equal(scale_grad(3, 700, 4), scale_first)) << round;
  }
  EXPECT_GT(MaxAbs(bias_first), 0.0);
  EXPECT_GT(MaxAbs(scale_first), 0.0);
}

// The solver update as the trainer runs it: float32 state, bf16 velocity.
TEST(FusedOpsCudaTest, SolverUpdateKernelsMatchFloat64) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    torch::Tensor x = Normal({4, 33, 64}, 41, torch::kFloat),
                  u = Normal({4, 33, 64}, 42, type),
                  r = Normal({4, 33, 64}, 43, torch::kFloat);
    const torch::Tensor d = torch::tensor({0.1f, 0.4f, -0.3f, 1.0f});
    OpRun want = Evaluate(
        FusedOpsMode::kOff, {x.to(torch::kDouble), u.to(torch::kDouble)},
        [&](std::vector<torch::Tensor>& in) {
          return SolverUpdate(in[0], d.to(torch::kDouble), in[1]);
        },
        r);
    const torch::Tensor dc = d.to(cuda);
    OpRun got = Evaluate(
        FusedOpsMode::kAuto, {x.to(cuda), u.to(cuda)},
        [&](std::vector<torch::Tensor>& in) {
          torch::Tensor y = SolverUpdate(in[0], dc, in[1]);
          EXPECT_NE(y.grad_fn()->name().find("SolverUpdateFunction"),
                    std::string::npos)
              << y.grad_fn()->name();
          EXPECT_EQ(y.scalar_type(), torch::kFloat);
          return y;
        },
        r);
    SCOPED_TRACE(::testing::Message() << "solver update " << type);
    ExpectSameRun(got, want, Tolerance(type));
    EXPECT_EQ(got.grads[1].scalar_type(), type);
  }
}

TEST(FusedOpsCudaTest, KernelsAreWhatAutoRunsOnCuda) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  torch::Tensor a = Normal({2, 8, 64}, 1, torch::kBFloat16).to(cuda);
  torch::Tensor s = Normal({2, 1, 64}, 2, torch::kBFloat16).to(cuda);
  a.requires_grad_(true);
  torch::Tensor y = Modulate(a, s, s);
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_NE(y.grad_fn()->name().find("ModulateFunction"), std::string::npos)
      << y.grad_fn()->name();
  torch::Tensor x = Normal({8, 64}, 3, torch::kBFloat16).to(cuda);
  torch::Tensor w = Normal({16, 64}, 4, torch::kBFloat16).to(cuda);
  w.requires_grad_(true);
  torch::Tensor z = BiasLinear(x, w, s.view({-1}).narrow(0, 0, 16));
  ASSERT_NE(z.grad_fn(), nullptr);
  EXPECT_NE(z.grad_fn()->name().find("BiasLinearFunction"), std::string::npos)
      << z.grad_fn()->name();
  auto [cos, sin] = Table(8, 16, torch::kBFloat16, cuda);
  torch::Tensor qkv = Normal({2, 8, 2, 3, 64}, 5, torch::kBFloat16).to(cuda);
  qkv.requires_grad_(true);
  torch::Tensor q = SplitQkvHeads(qkv, cos, sin, 16)[0];
  ASSERT_NE(q.grad_fn(), nullptr);
  EXPECT_NE(q.grad_fn()->name().find("QkvHeadsFunction"), std::string::npos)
      << q.grad_fn()->name();
}

// Whole vectors (16 heads of 64, rot 16: Pythia-410M's attention, the most
// threads a block; head_dim 16, rot 16) and single values (rot 4 splits a
// vector), with and without rotation, gradients in either layout.
TEST(FusedOpsCudaTest, SplitQkvHeadsKernelsGiveTheLibTorchBits) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  struct Shape {
    int64_t hd, rot, heads;
  };
  for (auto type : {torch::kBFloat16, torch::kFloat}) {
    for (Shape sh : {Shape{64, 16, 16}, Shape{64, 16, 3}, Shape{16, 16, 3},
                     Shape{16, 4, 3}, Shape{64, 0, 3}}) {
      for (bool head_major : {false, true}) {
        OpRun want = SplitRun(FusedOpsMode::kOff, type, cuda, sh.hd, sh.rot,
                              head_major, sh.heads);
        OpRun got = SplitRun(FusedOpsMode::kAuto, type, cuda, sh.hd, sh.rot,
                             head_major, sh.heads);
        EXPECT_TRUE(torch::equal(got.y, want.y))
            << type << " hd " << sh.hd << " rot " << sh.rot;
        EXPECT_TRUE(torch::equal(got.grads[0], want.grads[0]))
            << type << " hd " << sh.hd << " rot " << sh.rot << " max diff "
            << MaxDiff(got.grads[0], want.grads[0]);
      }
    }
  }
}

TEST(FusedOpsCudaTest, FlowVelocityWithKernelsFollowsLibTorchInBf16) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  for (bool parallel : {true, false}) {
    NeoXConfig c = LayerConfig(256, parallel);
    // The reference: the LibTorch expressions in float64 on the GPU.
    VelocityRun want = Velocity(FusedOpsMode::kOff, c, torch::kDouble, cuda);
    VelocityRun got = Velocity(FusedOpsMode::kAuto, c, torch::kBFloat16, cuda);
    VelocityRun plain = Velocity(FusedOpsMode::kOff, c, torch::kBFloat16, cuda);
    // The fused bf16 run is as close to float64 as the plain bf16 run is
    // (within 1.5x of its error, plus a floor for near-zero gradients).
    const double err_u = MaxDiff(plain.u, want.u);
    EXPECT_LE(MaxDiff(got.u, want.u), 1.5 * err_u + 1e-3 * MaxAbs(want.u));
    for (size_t i = 0; i < want.grads.size(); ++i) {
      const double plain_err = MaxDiff(plain.grads[i], want.grads[i]);
      EXPECT_LE(MaxDiff(got.grads[i], want.grads[i]),
                1.5 * plain_err + 1e-3 * MaxAbs(want.grads[i]))
          << "parameter " << i << " parallel " << parallel;
    }
  }
}

// The fused AdamW step against the unfused update on the same GPU: two
// weight-decay groups (one of odd size, so a range starts off a 16-byte
// boundary and ends in a scalar tail), a clip coefficient that scales and
// one that does not, six steps.
TEST(FusedOpsCudaTest, AdamWStepFollowsTheUnfusedUpdate) {
  if (!HaveKernels()) GTEST_SKIP() << "no CUDA device or no CUDA kernels";
  const torch::Device cuda(torch::kCUDA);
  auto params = [&]() {
    std::vector<torch::Tensor> p = {
        Normal({1001}, 1, torch::kFloat).to(cuda),
        Normal({64, 33}, 2, torch::kFloat).to(cuda)};
    for (auto& t : p) t.set_requires_grad(true);
    return p;
  };
  std::vector<torch::Tensor> a = params(), b = params();
  AdamW fused({AdamWGroup{{a[0]}, 0.1}, AdamWGroup{{a[1]}, 0.0}});
  AdamW plain({AdamWGroup{{b[0]}, 0.1}, AdamWGroup{{b[1]}, 0.0}});
  torch::Tensor grad = torch::empty({fused.size()}, a[0].options());
  for (int step = 0; step < 6; ++step) {
    torch::Tensor g =
        Normal({fused.size()}, 10 + step, torch::kFloat).to(cuda) * 3;
    const double clip = step % 2 == 0 ? 1.0 : 1e6;
    const double lr = 1e-2 * (1 + step);
    grad.copy_(g);
    fused.Step(grad, lr, ClipCoefficient(grad, clip));
    EXPECT_TRUE(torch::equal(grad, g)) << "the fused step only reads grad";
    SetFusedOpsMode(FusedOpsMode::kOff);
    grad.copy_(g);
    plain.Step(grad, lr, ClipCoefficient(grad, clip));
    SetFusedOpsMode(FusedOpsMode::kAuto);
    for (const auto& [x, y] :
         {std::pair{fused.master(), plain.master()},
          std::pair{fused.exp_avg(), plain.exp_avg()},
          std::pair{fused.exp_avg_sq(), plain.exp_avg_sq()}}) {
      EXPECT_LE(MaxDiff(x, y), 1e-6 * (1 + MaxAbs(y))) << "step " << step;
    }
  }
  // Not trivially equal: the parameters moved.
  EXPECT_GT(
      MaxDiff(fused.master(), torch::cat({Normal({1001}, 1, torch::kFloat),
                                          Normal({64 * 33}, 2, torch::kFloat)})
                                  .to(cuda)),
      1e-3);
}

}  // namespace
}  // namespace lft
