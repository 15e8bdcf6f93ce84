// AdamW on flat buffers against torch::optim::AdamW, to the bit.
#include "worker/model/adamw.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

namespace lft {
namespace {

std::vector<torch::Tensor> MakeParams(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<torch::Tensor> p = {at::normal(0, 1, {7, 5}, gen),
                                  at::normal(0, 1, {5}, gen),
                                  at::normal(0, 1, {3, 2, 4}, gen)};
  for (auto& t : p) t.set_requires_grad(true);
  return p;
}

// The gradient of sum(p^3) / 3 + sum(p): p^2 + 1, different each step.
void Backward(const std::vector<torch::Tensor>& params) {
  torch::Tensor loss = torch::zeros({});
  for (const auto& p : params) loss = loss + (p.pow(3) / 3 + p).sum();
  loss.backward();
}

TEST(AdamWTest, FollowsTorchAdamWBitForBitWithTwoDecayGroups) {
  std::vector<torch::Tensor> ours = MakeParams(5), theirs = MakeParams(5);
  AdamWOptions o;
  o.beta2 = 0.95;
  AdamW adam({AdamWGroup{{ours[0], ours[2]}, 0.1}, AdamWGroup{{ours[1]}, 0.0}},
             o);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(
      std::vector<torch::Tensor>{theirs[0], theirs[2]},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(1e-2).weight_decay(0.1).betas(
              {0.9, 0.95})));
  groups.emplace_back(
      std::vector<torch::Tensor>{theirs[1]},
      std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(1e-2).weight_decay(0.0).betas(
              {0.9, 0.95})));
  torch::optim::AdamW torch_adam(std::move(groups));
  torch::Tensor grad = torch::zeros({adam.size()});
  for (int step = 0; step < 6; ++step) {
    const double lr = 1e-2 * (1 + step);
    for (auto& g : torch_adam.param_groups())
      static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    for (auto& p : ours) p.mutable_grad().reset();
    torch_adam.zero_grad();
    Backward(ours);
    Backward(theirs);
    adam.GatherGradients(grad);
    adam.Step(grad, lr);
    torch_adam.step();
    for (size_t i = 0; i < ours.size(); ++i) {
      EXPECT_TRUE(torch::equal(ours[i], theirs[i]))
          << "param " << i << " step " << step << " max diff "
          << (ours[i] - theirs[i]).abs().max().item<double>();
    }
  }
  EXPECT_EQ(adam.steps(), 6u);
}

TEST(AdamWTest, ParametersAreViewsOfTheMasterBuffer) {
  std::vector<torch::Tensor> p = MakeParams(1);
  const torch::Tensor before = p[1].detach().clone();
  AdamW adam({AdamWGroup{p, 0.0}});
  ASSERT_EQ(adam.size(), 35 + 5 + 24);
  EXPECT_TRUE(torch::equal(p[1], before));  // values kept
  EXPECT_TRUE(torch::equal(adam.master().narrow(0, adam.offset(1), 5).view({5}),
                           p[1].detach()));
  torch::NoGradGuard no_grad;
  adam.master().fill_(2.0);
  EXPECT_EQ(p[2].sum().item<double>(), 2.0 * 24);
}

TEST(AdamWTest, GatherGradientsZeroesParametersWithoutGradient) {
  std::vector<torch::Tensor> p = MakeParams(2);
  AdamW adam({AdamWGroup{p, 0.0}});
  Backward({p[0]});
  torch::Tensor grad = torch::full({adam.size()}, 7.0);
  adam.GatherGradients(grad);
  EXPECT_TRUE(torch::allclose(grad.narrow(0, 0, 35),
                              (p[0].detach().pow(2) + 1).reshape({-1})));
  EXPECT_EQ(grad.narrow(0, 35, 29).abs().sum().item<double>(), 0.0);
}

TEST(AdamWTest, RestoredStateContinuesTheSameTrajectory) {
  std::vector<torch::Tensor> a = MakeParams(3), b = MakeParams(3);
  AdamW first({AdamWGroup{a, 0.01}});
  torch::Tensor grad = torch::zeros({first.size()});
  for (int step = 0; step < 3; ++step) {
    for (auto& p : a) p.mutable_grad().reset();
    Backward(a);
    first.GatherGradients(grad);
    first.Step(grad, 1e-2);
  }
  // A second optimizer over copies of the weights and the saved state.
  {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i]);
  }
  AdamW second({AdamWGroup{b, 0.01}});
  second.SetState(first.exp_avg().clone(), first.exp_avg_sq().clone(),
                  first.steps());
  for (auto* o : {&first, &second}) {
    auto& params = o == &first ? a : b;
    for (auto& p : params) p.mutable_grad().reset();
    Backward(params);
    o->GatherGradients(grad);
    o->Step(grad, 1e-2);
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

TEST(AdamWTest, ClipGradientNormScalesOnlyAboveTheLimit) {
  torch::Tensor g = torch::tensor({3.0f, 4.0f});
  ClipGradientNorm(g, 10.0);
  EXPECT_TRUE(torch::equal(g, torch::tensor({3.0f, 4.0f})));
  ClipGradientNorm(g, 1.0);
  EXPECT_NEAR(g.norm().item<double>(), 1.0, 1e-5);
  ClipGradientNorm(g, 0.0);  // off
  EXPECT_NEAR(g.norm().item<double>(), 1.0, 1e-5);
}

// Step's grad_scale is the clip coefficient applied inside the update: the
// same bits as clipping the buffer first.
TEST(AdamWTest, AGradScaleStepsAsClippingFirst) {
  std::vector<torch::Tensor> a = MakeParams(3), b = MakeParams(3);
  AdamW first({AdamWGroup{a, 0.01}}), second({AdamWGroup{b, 0.01}});
  torch::Tensor ga = torch::zeros({first.size()}),
                gb = torch::zeros({second.size()});
  for (int step = 0; step < 4; ++step) {
    for (auto& p : a) p.mutable_grad().reset();
    for (auto& p : b) p.mutable_grad().reset();
    Backward(a);
    Backward(b);
    first.GatherGradients(ga);
    second.GatherGradients(gb);
    const double clip = step % 2 == 0 ? 0.5 : 1e6;  // clips, then does not
    ClipGradientNorm(ga, clip);
    first.Step(ga, 1e-2);
    torch::Tensor coef = ClipCoefficient(gb, clip);
    ASSERT_TRUE(coef.defined());
    EXPECT_EQ(coef.numel(), 1);
    second.Step(gb, 1e-2, coef);
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(torch::equal(a[i], b[i])) << "step " << step;
  }
  EXPECT_FALSE(ClipCoefficient(ga, 0.0).defined());
}

}  // namespace
}  // namespace lft
