// Flow layer, solvers, losses (with a float64 finite-difference gradient
// check), metrics, baselines, the 2D toy study and the local trainer.
#include <cmath>
#include <filesystem>

#include "tests/unit/worker/test_util.h"
#include "worker/model/eval_metrics.h"
#include "worker/model/export.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/local_trainer.h"
#include "worker/model/tensor_io.h"
#include "worker/model/toy2d.h"

namespace lft {
namespace {

NeoXConfig SmallConfig(bool parallel) {
  NeoXConfig c;
  c.vocab_size = 20;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.rotary_pct = 0.5;
  c.use_parallel_residual = parallel;
  return c;
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble))
      .abs()
      .max()
      .item<double>();
}

torch::Tensor Normal(std::vector<int64_t> shape, uint64_t seed,
                     torch::ScalarType type = torch::kFloat) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::normal(0.0, 1.0, shape, gen).to(type);
}

class FlowLayerTest : public ::testing::TestWithParam<bool> {};

// The trainer's path on a GPU: weights cast once per step (here to
// float64, where the result is checkable), x cast on entry, gradients
// reaching the float32 parameters through the casts.
TEST_P(FlowLayerTest, EvalWeightsInAnotherDtypeGiveTheSameVelocity) {
  NeoXConfig c = SmallConfig(GetParam());
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 4));
  ASSERT_TRUE(teacher.ok());
  FlowLayerOptions o;
  o.init = FlowInit::kAdaLnZero;  // gates 0: perturb the AdaLN weights
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(), o);
  {
    torch::NoGradGuard no_grad;
    layer->ada_out()->weight.copy_(Normal({6 * 16, 16}, 9).mul_(0.1));
  }
  torch::Tensor x = Normal({2, 5, 16}, 2), t = torch::tensor({0.2f, 0.9f});
  const FlowEvalWeights w64 = layer->EvalWeights(torch::kDouble);
  torch::Tensor u64 = layer->Velocity(x, t, w64);
  EXPECT_EQ(u64.scalar_type(), torch::kDouble);
  torch::Tensor u32 = layer->Velocity(x, t);
  EXPECT_EQ(u32.scalar_type(), torch::kFloat);
  EXPECT_LT(MaxDiff(u64, u32), 1e-5);
  EXPECT_GT(u32.abs().max().item<double>(), 1e-2);  // not trivially zero
  u64.pow(2).sum().backward();
  const torch::Tensor& g = layer->ada_out()->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_EQ(g.scalar_type(), torch::kFloat);
  EXPECT_GT(g.abs().max().item<double>(), 0.0);
}

TEST_P(FlowLayerTest, TeacherInitStartsAsTeacherLayer) {
  NeoXConfig c = SmallConfig(GetParam());
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 3));
  ASSERT_TRUE(teacher.ok());
  FlowLayer layer((*teacher)->layer(1), (*teacher)->layer_shape(),
                  FlowLayerOptions());
  torch::Tensor x = Normal({2, 5, 16}, 1);
  torch::Tensor want = (*teacher)->RunLayers(x, 1, 2);
  for (double t : {0.0, 0.37, 1.0}) {
    torch::Tensor tt = torch::full({2}, t);
    EXPECT_LT(MaxDiff(layer->Block(x, tt), want), 1e-6) << "t = " << t;
    EXPECT_LT(MaxDiff(layer->Velocity(x, tt), want - x), 1e-6);
  }
}

TEST_P(FlowLayerTest, AdaLnZeroStartsAtZeroVelocity) {
  NeoXConfig c = SmallConfig(GetParam());
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 3));
  ASSERT_TRUE(teacher.ok());
  FlowLayerOptions o;
  o.init = FlowInit::kAdaLnZero;
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(), o);
  torch::Tensor x = Normal({2, 5, 16}, 2);
  EXPECT_EQ(
      layer->Velocity(x, torch::full({2}, 0.5)).abs().max().item<double>(),
      0.0);
}

TEST_P(FlowLayerTest, IsCausalAndPerSequenceInTime) {
  NeoXConfig c = SmallConfig(GetParam());
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 3));
  ASSERT_TRUE(teacher.ok());
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(),
                  FlowLayerOptions());
  {
    torch::NoGradGuard ng;  // make the time MLP non-trivial
    layer->ada_out()->weight.copy_(Normal({6 * 16, 16}, 5) * 0.1);
  }
  torch::Tensor x = Normal({2, 6, 16}, 4);
  torch::Tensor t = torch::tensor({0.2f, 0.9f});
  torch::Tensor y = layer->Block(x, t);
  torch::Tensor x2 = x.clone();
  x2.narrow(1, 4, 2).add_(1.0);  // change only the last two tokens
  torch::Tensor y2 = layer->Block(x2, t);
  EXPECT_LT(MaxDiff(y.narrow(1, 0, 4), y2.narrow(1, 0, 4)), 1e-6);
  EXPECT_GT(MaxDiff(y.narrow(1, 4, 2), y2.narrow(1, 4, 2)), 1e-3);
  // Sequence 0 depends only on its own t.
  torch::Tensor y3 = layer->Block(x, torch::tensor({0.2f, 0.1f}));
  EXPECT_LT(MaxDiff(y3[0], y[0]), 1e-6);
  EXPECT_GT(MaxDiff(y3[1], y[1]), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Residual, FlowLayerTest, ::testing::Bool());

// A k-step Euler LFT folded into plain GPT-NeoX layers computes the same
// logits as layers 0..m-1 + Integrate(Euler, k) + tail (fp32 reordering
// only: 1e-4 on logits of scale ~10).
TEST(ExportTest, EulerFlowFoldsIntoGptNeoXLayers) {
  NeoXConfig c = SmallConfig(true);
  c.num_hidden_layers = 4;
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 6));
  ASSERT_TRUE(teacher.ok());
  FlowLayer layer((*teacher)->layer(1), (*teacher)->layer_shape(),
                  FlowLayerOptions());
  {
    torch::NoGradGuard ng;
    layer->ada_out()->weight.copy_(Normal({6 * 16, 16}, 5) * 0.2);
    layer->ada_in()->weight.copy_(Normal({16, 128}, 6) * 0.5);
  }
  auto gen = at::detail::createCPUGenerator(1);
  torch::Tensor ids = at::randint(0, c.vocab_size, {2, 7}, gen,
                                  torch::TensorOptions().dtype(torch::kLong));
  VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return layer->Velocity(x, t);
  };
  for (int64_t k : {1, 3}) {
    auto exported = ExportEulerModel(**teacher, *layer, 1, 3, k);
    ASSERT_TRUE(exported.ok()) << exported.status();
    EXPECT_EQ(exported->config.num_hidden_layers, 4 - 2 + k);
    const std::string dir = MakeTempDir("export" + std::to_string(k));
    ASSERT_TRUE(WriteExportedModel(*exported, dir).ok());
    auto loaded = GptNeoX::Load(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto got = (*loaded)->Forward(ids);
    ASSERT_TRUE(got.ok());
    torch::NoGradGuard ng;
    torch::Tensor x0 = (*teacher)->RunLayers((*teacher)->Embed(ids), 0, 1);
    torch::Tensor x1 = Integrate(u, x0, UniformGrid(k), StepRule::kEuler);
    auto want = (*teacher)->Tail(x1, 3);
    ASSERT_TRUE(want.ok());
    EXPECT_LT(MaxDiff(got->logits, *want), 1e-4) << "k = " << k;
  }
  EXPECT_THAT(ExportEulerModel(**teacher, *layer, 1, 3, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, "k >= 1"));
  NeoXConfig sc = SmallConfig(false);
  auto seq = GptNeoX::FromTensors(sc, GptNeoX::RandomTensors(sc, 6));
  ASSERT_TRUE(seq.ok());
  FlowLayer seq_layer((*seq)->layer(0), (*seq)->layer_shape(),
                      FlowLayerOptions());
  EXPECT_THAT(ExportEulerModel(**seq, *seq_layer, 0, 1, 2),
              StatusIs(absl::StatusCode::kFailedPrecondition, "sequential"));
}

TEST(FlowCheckpointTest, RoundTripRestoresTheLayerExactly) {
  NeoXConfig c = SmallConfig(true);
  c.num_hidden_layers = 4;
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 6));
  ASSERT_TRUE(teacher.ok());
  FlowLayerOptions fo;
  fo.init = FlowInit::kAdaLnZero;
  FlowLayer layer((*teacher)->layer(1), (*teacher)->layer_shape(), fo);
  {
    torch::NoGradGuard ng;
    layer->ada_out()->weight.copy_(Normal({6 * 16, 16}, 5) * 0.2);
  }
  FlowCheckpoint ck;
  ck.header.first_layer = 1;
  ck.header.end_layer = 3;
  ck.header.method = "fw";
  ck.header.init = "adaln-zero";
  ck.header.step = 50;
  ck.header.tokens = 12345;
  ck.header.epoch = 2;
  ck.header.blocks_consumed = 17;
  ck.header.seed = 9;
  ck.header.world_size = 2;
  ck.header.losses = {1.5, 0.25, 1e-7};
  ck.weights = FlowLayerWeights(*layer);
  ck.optimizer["exp_avg/ada_in.weight"] = Normal({16, 128}, 3);
  auto bytes = SerializeFlowCheckpoint(ck);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto back = ParseFlowCheckpoint(*bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->header.step, 50u);
  EXPECT_EQ(back->header.tokens, 12345u);
  EXPECT_EQ(back->header.epoch, 2u);
  EXPECT_EQ(back->header.blocks_consumed, 17u);
  EXPECT_EQ(back->header.world_size, 2u);
  EXPECT_EQ(back->header.method, "fw");
  EXPECT_EQ(back->header.losses, ck.header.losses);
  EXPECT_EQ(MaxDiff(back->optimizer["exp_avg/ada_in.weight"],
                    ck.optimizer["exp_avg/ada_in.weight"]),
            0.0);
  auto restored = RestoreFlowLayer(**teacher, *back, FlowLayerOptions());
  ASSERT_TRUE(restored.ok()) << restored.status();
  torch::Tensor x = Normal({2, 5, 16}, 4);
  torch::Tensor t = torch::tensor({0.2f, 0.7f});
  torch::NoGradGuard ng;
  EXPECT_EQ(MaxDiff((*restored)->Velocity(x, t), layer->Velocity(x, t)), 0.0);

  // Another teacher's width, a foreign blob and a block outside the teacher.
  NeoXConfig wide = c;
  wide.hidden_size = 32;
  auto other = GptNeoX::FromTensors(wide, GptNeoX::RandomTensors(wide, 1));
  ASSERT_TRUE(other.ok());
  EXPECT_THAT(RestoreFlowLayer(**other, *back, FlowLayerOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument, "another teacher"));
  TensorBundle foreign;
  foreign.tensors["x"] = torch::zeros({2});
  EXPECT_THAT(ParseFlowCheckpoint(*SerializeTensors(foreign)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not an lft flow checkpoint"));
  FlowCheckpoint far = *back;
  far.header.end_layer = 9;
  EXPECT_THAT(RestoreFlowLayer(**teacher, far, FlowLayerOptions()),
              StatusIs(absl::StatusCode::kInvalidArgument, "outside"));
  EXPECT_FALSE(ParseFlowCheckpoint(bytes->substr(0, 40)).ok());
}

TEST(SolverTest, LinearFieldMatchesClosedForm) {
  // u(x, t) = a x: Euler multiplies by (1 + a d), midpoint by
  // (1 + a d + (a d)^2 / 2) per step, on any grid.
  const double a = -0.7;
  VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor&) {
    return a * x;
  };
  torch::Tensor x0 = Normal({3, 4}, 1, torch::kDouble);
  const std::vector<double> grid = {0.0, 0.1, 0.5, 0.55, 1.0};
  double euler = 1, mid = 1;
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const double d = grid[i + 1] - grid[i];
    euler *= 1 + a * d;
    mid *= 1 + a * d + a * a * d * d / 2;
  }
  EXPECT_LT(MaxDiff(Integrate(u, x0, grid, StepRule::kEuler), x0 * euler),
            1e-12);
  std::vector<torch::Tensor> path;
  EXPECT_LT(
      MaxDiff(Integrate(u, x0, grid, StepRule::kMidpoint, &path), x0 * mid),
      1e-12);
  EXPECT_EQ(path.size(), grid.size());
  // Time-dependent field u = t: x1 = x0 + 1/2 exactly for midpoint, any k.
  VelocityFn ut = [](const torch::Tensor& x, const torch::Tensor& t) {
    return t.view({-1, 1}).expand_as(x);
  };
  EXPECT_LT(
      MaxDiff(Integrate(ut, x0, UniformGrid(3), StepRule::kMidpoint), x0 + 0.5),
      1e-12);
  EXPECT_LT(
      MaxDiff(Integrate(ut, x0, UniformGrid(4), StepRule::kEuler), x0 + 0.375),
      1e-12);
  EXPECT_EQ(NetworkEvaluations(3, StepRule::kMidpoint), 6);
}

TEST(LossTest, ExactFieldGivesZeroAndPaddingIsIgnored) {
  torch::Tensor x0 = Normal({2, 5, 4}, 1, torch::kDouble);
  torch::Tensor x1 = Normal({2, 5, 4}, 2, torch::kDouble);
  VelocityFn exact = [&](const torch::Tensor&, const torch::Tensor&) {
    return x1 - x0;
  };
  auto gen = at::detail::createCPUGenerator(3);
  EXPECT_LT(SfmLoss(exact, x0, x1, torch::Tensor(), gen).item<double>(), 1e-24);
  for (int64_t k : {1, 2, 3, 5}) {
    EXPECT_LT(
        FwLoss(exact, x0, x1, torch::Tensor(), k, StepRule::kMidpoint, gen)
            .item<double>(),
        1e-24);
  }
  // Padding: positions 3, 4 of sequence 1 are padding; garbage there must
  // not change the loss.
  torch::Tensor mask = torch::ones({2, 5});
  mask[1][3] = 0;
  mask[1][4] = 0;
  VelocityFn zero = [](const torch::Tensor& x, const torch::Tensor&) {
    return torch::zeros_like(x);
  };
  torch::Tensor x1g = x1.clone();
  x1g[1][3].fill_(1e6);
  x1g[1][4].fill_(-1e6);
  FlowLossOptions o;
  for (FlowMethod m :
       {FlowMethod::kSfm, FlowMethod::kFw, FlowMethod::kHybrid}) {
    o.method = m;
    auto g1 = at::detail::createCPUGenerator(5),
         g2 = at::detail::createCPUGenerator(5);
    const double a = FlowLoss(zero, x0, x1, mask, o, g1).item<double>();
    const double b = FlowLoss(zero, x0, x1g, mask, o, g2).item<double>();
    EXPECT_NEAR(a, b, 1e-12);
    // Zero field: FW loss = mean over valid tokens of (x0 - x1)^2.
    if (m == FlowMethod::kFw) {
      torch::Tensor d = (x0 - x1).pow(2).sum(-1) * mask.to(torch::kDouble);
      EXPECT_NEAR(a, d.sum().item<double>() / (8 * 4), 1e-12);
    }
  }
}

// The trainer evaluates the AdaLN MLP once for all of a loss's times
// (FactorsAt at FlowEvaluationTimes). That rests on the times being those
// the loss passes, in its order, and on the batched pass giving the
// per-call loss and gradients.
TEST(LossTest, BatchedFactorsAtTheListedTimesGiveThePerCallLoss) {
  NeoXConfig c = SmallConfig(true);
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 6));
  ASSERT_TRUE(teacher.ok());
  FlowLayerOptions fo;
  fo.dtype = torch::kDouble;
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(), fo);
  {
    torch::NoGradGuard ng;
    layer->ada_out()->weight.copy_(Normal({96, 16}, 4, torch::kDouble) * 0.1);
  }
  torch::Tensor x0 = Normal({3, 5, 16}, 1, torch::kDouble);
  torch::Tensor x1 = x0 + 0.5 * Normal({3, 5, 16}, 2, torch::kDouble);
  struct Case {
    FlowMethod method;
    int64_t k;
    StepRule rule;
  };
  for (const Case& cs : {Case{FlowMethod::kSfm, 3, StepRule::kMidpoint},
                         Case{FlowMethod::kFw, 3, StepRule::kMidpoint},
                         Case{FlowMethod::kFw, 4, StepRule::kEuler},
                         Case{FlowMethod::kFw, 1, StepRule::kMidpoint},
                         Case{FlowMethod::kHybrid, 2, StepRule::kMidpoint}}) {
    FlowLossOptions o;
    o.method = cs.method;
    o.fw_steps = cs.k;
    o.rule = cs.rule;
    o.alpha = 0.5;
    auto gen = at::detail::createCPUGenerator(8);
    const FlowTimes times = DrawFlowTimes(3, o, gen);
    const std::string label = "method " +
                              std::to_string(static_cast<int>(cs.method)) +
                              " k " + std::to_string(cs.k);
    std::vector<torch::Tensor> seen;
    std::vector<int64_t> indices;
    const FlowEvalWeights w = layer->EvalWeights();
    IndexedVelocityFn per_call = [&](const torch::Tensor& x,
                                     const torch::Tensor& t, int64_t e) {
      seen.push_back(t.detach().clone());
      indices.push_back(e);
      return layer->Velocity(x, t, w);
    };
    layer->zero_grad();
    torch::Tensor want =
        FlowLossAt(per_call, x0, x1, torch::Tensor(), o, times);
    want.backward();
    std::vector<torch::Tensor> want_grads;
    for (const torch::Tensor& p : layer->parameters())
      want_grads.push_back(p.grad().clone());

    const std::vector<torch::Tensor> listed =
        FlowEvaluationTimes(o, times, 3, x0);
    ASSERT_EQ(listed.size(), seen.size()) << label;
    for (size_t e = 0; e < seen.size(); ++e) {
      EXPECT_EQ(indices[e], static_cast<int64_t>(e)) << label;
      EXPECT_TRUE(torch::equal(listed[e], seen[e])) << label << " e " << e;
    }

    layer->zero_grad();
    const std::vector<torch::Tensor> factors =
        layer->FactorsAt(torch::stack(listed), w);
    IndexedVelocityFn batched = [&](const torch::Tensor& x,
                                    const torch::Tensor&, int64_t e) {
      return layer->VelocityWithFactors(x, factors.at(e), w);
    };
    torch::Tensor got = FlowLossAt(batched, x0, x1, torch::Tensor(), o, times);
    got.backward();
    EXPECT_NEAR(got.item<double>(), want.item<double>(),
                1e-12 * want.item<double>())
        << label;
    std::vector<torch::Tensor> params = layer->parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_LT(MaxDiff(params[i].grad(), want_grads[i]),
                1e-10 * (1 + want_grads[i].abs().max().item<double>()))
          << label << " parameter " << i;
    }
  }
}

// Autograd through the flow layer and the solver vs central differences in
// float64. Step 1e-6 gives O(1e-12) truncation and O(1e-10) rounding error
// relative to O(1) gradients; 1e-6 relative tolerance is ample.
TEST(GradientCheckTest, FlowLossesMatchFiniteDifferences) {
  NeoXConfig c = SmallConfig(true);
  c.hidden_size = 8;
  c.intermediate_size = 16;
  auto teacher = GptNeoX::FromTensors(c, GptNeoX::RandomTensors(c, 3));
  ASSERT_TRUE(teacher.ok());
  FlowLayerOptions fo;
  fo.dtype = torch::kDouble;
  fo.time_embed_dim = 8;
  FlowLayer layer((*teacher)->layer(0), (*teacher)->layer_shape(), fo);
  {
    torch::NoGradGuard ng;
    layer->ada_out()->weight.copy_(Normal({48, 8}, 7, torch::kDouble) * 0.1);
  }
  torch::Tensor x0 = Normal({2, 4, 8}, 8, torch::kDouble);
  torch::Tensor x1 = x0 + 0.5 * Normal({2, 4, 8}, 9, torch::kDouble);
  torch::Tensor mask = torch::ones({2, 4}, torch::kDouble);
  mask[1][3] = 0;
  VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return layer->Velocity(x, t);
  };
  for (FlowMethod method : {FlowMethod::kSfm, FlowMethod::kFw}) {
    FlowLossOptions o;
    o.method = method;
    o.fw_steps = 2;
    auto loss_fn = [&]() {
      auto gen = at::detail::createCPUGenerator(11);  // same t every call
      return FlowLoss(u, x0, x1, mask, o, gen);
    };
    layer->zero_grad();
    loss_fn().backward();
    std::vector<std::pair<torch::Tensor, int64_t>> probes = {
        {layer->weights().qkv_w, 5},  {layer->weights().ln1_w, 3},
        {layer->weights().fc2_w, 17}, {layer->ada_out()->weight, 100},
        {layer->ada_in()->weight, 9}, {layer->weights().dense_b, 2}};
    for (auto& [param, index] : probes) {
      torch::Tensor flat = param.view({-1});
      const double analytic = param.grad().view({-1})[index].item<double>();
      const double eps = 1e-6;
      double plus, minus;
      {
        torch::NoGradGuard ng;
        const double orig = flat[index].item<double>();
        flat[index] = orig + eps;
        plus = loss_fn().item<double>();
        flat[index] = orig - eps;
        minus = loss_fn().item<double>();
        flat[index] = orig;
      }
      const double numeric = (plus - minus) / (2 * eps);
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric)))
          << "method " << static_cast<int>(method) << " index " << index;
    }
  }
}

TEST(MetricsTest, NmseKlPerplexity) {
  torch::Tensor x1 = torch::ones({2, 3, 4});
  torch::Tensor mask = torch::ones({2, 3});
  mask[1][2] = 0;
  torch::Tensor x1_hat = x1.clone();
  x1_hat[0][0] += 1.0;    // error 4 on a valid token
  x1_hat[1][2] += 100.0;  // padding: ignored
  NmseAccumulator nmse;
  nmse.Add(x1_hat, x1, mask);
  EXPECT_DOUBLE_EQ(nmse.Value(), 4.0 / (5 * 4));

  // Perplexity is exp(total NLL / total tokens) over batches, not a mean of
  // per-batch perplexities: batch A (1 target, uniform over 4 -> NLL log 4),
  // batch B (3 targets, certain -> NLL ~0).
  PerplexityAccumulator ppl;
  ppl.Add(torch::zeros({1, 2, 4}), torch::tensor({{0, 1}}), torch::Tensor());
  torch::Tensor sure = torch::full({1, 4, 4}, -1e4);
  torch::Tensor ids = torch::tensor({{0, 1, 2, 3}});
  for (int j = 0; j < 3; ++j) sure[0][j][j + 1] = 0;
  ppl.Add(sure, ids, torch::Tensor());
  EXPECT_EQ(ppl.tokens(), 4);
  EXPECT_NEAR(ppl.Value(), std::exp(std::log(4.0) / 4), 1e-9);
  // A padded target is not counted.
  PerplexityAccumulator padded;
  padded.Add(torch::zeros({1, 3, 4}), torch::tensor({{0, 1, 2}}),
             torch::tensor({{1.0, 1.0, 0.0}}));
  EXPECT_EQ(padded.tokens(), 1);

  KlAccumulator kl;
  torch::Tensor p = torch::tensor({{{std::log(0.75), std::log(0.25)}}});
  torch::Tensor q = torch::tensor({{{std::log(0.5), std::log(0.5)}}});
  kl.Add(p, q, torch::Tensor());
  EXPECT_NEAR(kl.Value(), 0.75 * std::log(1.5) + 0.25 * std::log(0.5), 1e-6);
}

// KL(softmax(a) || softmax(b)) of one token, by explicit exponentials and
// sums in float64 (no log_softmax), for the accumulators to be checked
// against.
double TokenKl(const torch::Tensor& a, const torch::Tensor& b) {
  const torch::Tensor x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  const double xmax = x.max().item<double>(), ymax = y.max().item<double>();
  const torch::Tensor ex = (x - xmax).exp(), ey = (y - ymax).exp();
  const double zx = ex.sum().item<double>(), zy = ey.sum().item<double>();
  double kl = 0;
  for (int64_t i = 0; i < x.size(0); ++i) {
    const double p = ex[i].item<double>() / zx;
    const double q = ey[i].item<double>() / zy;
    kl += p * (std::log(p) - std::log(q));
  }
  return kl;
}

TEST(ReplacementMetricsTest, LocalKlMeasuresMatchPerTokenKlOverValidTokens) {
  // Two batches [2, 3, 6] (hidden 6) with lens logits [2, 3, 9]; the mask
  // drops two positions of the second batch.
  const torch::Tensor ref = Normal({2, 2, 3, 6}, 21);
  const torch::Tensor hat = ref + 0.7 * Normal({2, 2, 3, 6}, 22);
  const torch::Tensor lens_ref = 2 * Normal({2, 2, 3, 9}, 23);
  const torch::Tensor lens_hat = lens_ref + Normal({2, 2, 3, 9}, 24);
  const torch::Tensor masks[2] = {
      torch::ones({2, 3}), torch::tensor({{1.f, 1.f, 0.f}, {1.f, 0.f, 1.f}})};
  ReplacementMetrics m;
  EXPECT_TRUE(std::isnan(m.kl_x_softmax()));  // no latent seen yet
  EXPECT_TRUE(std::isnan(m.kl_x_lens()));
  double softmax_sum = 0, lens_sum = 0;
  int tokens = 0;
  for (int b = 0; b < 2; ++b) {
    m.AddLocal(hat[b], ref[b], lens_hat[b], lens_ref[b], masks[b]);
    for (int i = 0; i < 2; ++i) {
      for (int j = 0; j < 3; ++j) {
        if (masks[b][i][j].item<float>() == 0) continue;
        softmax_sum += TokenKl(ref[b][i][j], hat[b][i][j]);
        lens_sum += TokenKl(lens_ref[b][i][j], lens_hat[b][i][j]);
        ++tokens;
      }
    }
  }
  ASSERT_EQ(tokens, 10);
  // Both sides sum float64 values of the same float32 inputs: 1e-9.
  EXPECT_NEAR(m.kl_x_softmax(), softmax_sum / tokens,
              1e-9 * softmax_sum / tokens);
  EXPECT_NEAR(m.kl_x_lens(), lens_sum / tokens, 1e-9 * lens_sum / tokens);
  EXPECT_GT(m.kl_x_softmax(), 1e-3);  // the inputs differ: the test can fail
  // The order is KL(ref || hat), not the reverse.
  ReplacementMetrics swapped;
  swapped.AddLocal(ref[0], hat[0], lens_ref[0], lens_hat[0], masks[0]);
  ReplacementMetrics first;
  first.AddLocal(hat[0], ref[0], lens_hat[0], lens_ref[0], masks[0]);
  EXPECT_NE(swapped.kl_x_softmax(), first.kl_x_softmax());
  // Add alone (the teacher row) leaves the local measures absent.
  ReplacementMetrics teacher;
  teacher.Add(torch::Tensor(), torch::Tensor(), lens_ref[0], lens_ref[0],
              lens_ref[0], torch::zeros({2, 3}, torch::kLong), masks[0]);
  EXPECT_TRUE(std::isnan(teacher.kl_x_softmax()));
}

TEST(BaselineTest, LinearMapFitterRecoversAnAffineMapOverMaskedChunks) {
  // x1 = x0 A + c on valid tokens; padded positions carry garbage x1 that
  // must not enter the normal equations. Three chunks, default ridge.
  const torch::Tensor a = Normal({8, 8}, 31, torch::kDouble);
  const torch::Tensor c = Normal({8}, 32, torch::kDouble);
  const torch::Tensor mask = torch::ones({3, 4, 10});
  mask[1][2].narrow(0, 6, 4).zero_();
  mask[2][0].narrow(0, 0, 3).zero_();
  LinearMapFitter fit, unmasked;
  for (int chunk = 0; chunk < 3; ++chunk) {
    const torch::Tensor x0 = 3 * Normal({4, 10, 8}, 40 + chunk);
    torch::Tensor x1 =
        (torch::matmul(x0.to(torch::kDouble), a) + c).to(torch::kFloat);
    const torch::Tensor pad = (mask[chunk] == 0).unsqueeze(-1);
    x1 = torch::where(pad, torch::full_like(x1, 1000.f), x1);
    fit.Add(x0, x1, mask[chunk]);
    unmasked.Add(x0, x1, torch::Tensor());
  }
  EXPECT_EQ(fit.tokens(), 120 - 4 - 3);
  EXPECT_EQ(unmasked.tokens(), 120);
  const torch::Tensor w = fit.Solve();
  ASSERT_EQ(w.size(0), 9);
  ASSERT_EQ(w.size(1), 8);
  // Fresh inputs: the fitted map generalises, NMSE ~ 0 (float32 targets
  // and the 1e-6 ridge leave ~1e-12).
  const torch::Tensor x0 = 3 * Normal({2, 10, 8}, 50);
  const torch::Tensor want = torch::matmul(x0.to(torch::kDouble), a) + c;
  NmseAccumulator nmse;
  nmse.Add(LinearMapFitter::Apply(w, x0.to(torch::kDouble)), want,
           torch::Tensor());
  EXPECT_LT(nmse.Value(), 1e-9);
  NmseAccumulator garbage;
  garbage.Add(LinearMapFitter::Apply(unmasked.Solve(), x0.to(torch::kDouble)),
              want, torch::Tensor());
  EXPECT_GT(garbage.Value(), 1e-3);  // the mask is what makes it exact
}

TEST(BaselineTest, LinearMapAndBlockSignals) {
  torch::Tensor x0 = Normal({4, 6, 5}, 1, torch::kDouble);
  torch::Tensor w = Normal({5, 5}, 2, torch::kDouble);
  torch::Tensor x1 = torch::matmul(x0, w) + 0.3;
  LinearMapFitter fit;
  fit.Add(x0.narrow(0, 0, 2), x1.narrow(0, 0, 2), torch::Tensor());
  fit.Add(x0.narrow(0, 2, 2), x1.narrow(0, 2, 2), torch::Tensor());
  torch::Tensor sol = fit.Solve(1e-12);
  EXPECT_LT(MaxDiff(LinearMapFitter::Apply(sol, x0), x1), 1e-6);
  BlockSignals same = ComputeBlockSignals(x0, x0, torch::Tensor());
  EXPECT_NEAR(same.angular_distance, 0.0, 1e-6);
  EXPECT_NEAR(same.block_influence, 0.0, 1e-12);
  BlockSignals opposite = ComputeBlockSignals(x0, -x0, torch::Tensor());
  EXPECT_NEAR(opposite.angular_distance, 1.0, 1e-6);
  EXPECT_NEAR(opposite.block_influence, 2.0, 1e-12);
}

// The paper's 2D toy study at a test-sized budget (300 steps). Measured with
// this seed: SFM endpoint error ~1.99, swap rate 1.0; FW k=3 ~0.33 / 0.01;
// hybrid ~0.36 / 0.0. Margins: SFM > 1.5 (pairs land on the wrong blob, 2
// apart), FW and hybrid < 0.7 with swap rate < 0.05.
TEST(Toy2dTest, FwKeepsPairingSfmDoesNot) {
  torch::set_num_threads(1);
  std::map<std::string, Toy2dResult> r;
  for (const char* method : {"sfm", "fw", "hybrid"}) {
    Toy2dOptions o;
    o.method = method;
    o.train_steps = 300;
    o.lr = 0.01;
    o.hidden = 32;
    o.batch = 128;
    auto res = RunToy2d(o);
    ASSERT_TRUE(res.ok()) << res.status();
    r[method] = *res;
  }
  EXPECT_GT(r["sfm"].endpoint_error, 1.5);
  EXPECT_GT(r["sfm"].swap_rate, 0.8);
  for (const char* m : {"fw", "hybrid"}) {
    EXPECT_LT(r[m].endpoint_error, 0.7) << m;
    EXPECT_LT(r[m].swap_rate, 0.05) << m;
  }
  Toy2dOptions bad;
  bad.method = "ot";
  EXPECT_THAT(RunToy2d(bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"ot\""));
}

TEST(LocalTrainerTest, LossFallsAndFwBeatsSkip) {
  const std::string dir = SourceDir() + "/tests/fixtures/neox/tiny-parallel";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    GTEST_SKIP() << "fixture " << dir << " absent";
  }
  torch::set_num_threads(1);
  LocalTrainOptions o;
  o.teacher_dir = dir;
  o.m = 1;
  o.n = 3;
  o.methods = {"fw"};
  o.eval_k = {3};
  o.steps = 60;
  o.batch_size = 4;
  o.seq_len = 16;
  o.warmup_steps = 5;
  o.eval_batches = 2;
  auto report = RunLocalTraining(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::vector<double>& losses = report->logs[0].losses;
  ASSERT_EQ(losses.size(), 60u);
  double first = 0, last = 0;
  for (int i = 0; i < 10; ++i) {
    first += losses[i];
    last += losses[50 + i];
  }
  EXPECT_LT(last, 0.7 * first);
  const EvalRow* fw = report->Find("fw", 3);
  const EvalRow* skip = report->Find("skip");
  const EvalRow* teacher = report->Find("teacher");
  ASSERT_TRUE(fw && skip && teacher);
  EXPECT_LT(fw->nmse, 0.5 * skip->nmse);
  EXPECT_LT(fw->kl_x, skip->kl_x);
  EXPECT_EQ(teacher->nmse, 0.0);
  EXPECT_EQ(fw->nfe, 6);
  EXPECT_NE(report->FormatTable().find("| fw | 3 | 6 |"), std::string::npos);

  EXPECT_LT(teacher->kl_pq, 1e-9);

  o.methods = {"flow"};
  EXPECT_THAT(RunLocalTraining(o),
              StatusIs(absl::StatusCode::kInvalidArgument, "method \"flow\""));
  o.methods = {"fw"};
  o.n = 9;
  EXPECT_THAT(RunLocalTraining(o),
              StatusIs(absl::StatusCode::kInvalidArgument, "block [1, 9)"));
}

TEST(LocalTrainerTest, ReadsIdsFileWithPadding) {
  const std::string dir = SourceDir() + "/tests/fixtures/neox/tiny-sequential";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    GTEST_SKIP() << "fixture " << dir << " absent";
  }
  const std::string tmp = MakeTempDir("ids");
  auto gen = at::detail::createCPUGenerator(2);
  torch::Tensor ids = at::randint(0, 128, {12, 10}, gen,
                                  torch::TensorOptions().dtype(torch::kLong));
  torch::Tensor mask = torch::ones({12, 10});
  mask.narrow(1, 6, 4).zero_();  // right padding on every sequence
  ASSERT_TRUE(SaveTensors({{"input_ids", ids}, {"mask", mask}},
                          tmp + "/ids.safetensors")
                  .ok());
  LocalTrainOptions o;
  o.teacher_dir = dir;
  o.ids_file = tmp + "/ids.safetensors";
  o.m = 0;
  o.n = 2;
  o.methods = {"hybrid"};
  o.eval_k = {1};
  o.steps = 5;
  o.batch_size = 3;
  o.eval_batches = 2;
  o.init = "adaln-zero";
  auto report = RunLocalTraining(o);
  ASSERT_TRUE(report.ok()) << report.status();
  const EvalRow* h = report->Find("hybrid", 1);
  ASSERT_NE(h, nullptr);
  EXPECT_TRUE(std::isfinite(h->nmse) && std::isfinite(h->ppl));
  ASSERT_TRUE(SaveTensors({{"tokens", ids}}, tmp + "/bad.safetensors").ok());
  o.ids_file = tmp + "/bad.safetensors";
  EXPECT_THAT(RunLocalTraining(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "needs an \"input_ids\""));
  o.ids_file = tmp + "/ids.safetensors";
  o.init = "zero";
  EXPECT_THAT(RunLocalTraining(o),
              StatusIs(absl::StatusCode::kInvalidArgument, "init \"zero\""));
}

}  // namespace
}  // namespace lft
