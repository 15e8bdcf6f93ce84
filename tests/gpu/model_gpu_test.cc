// GPU checks of the model core (label gpu; skipped without CUDA): the teacher
// and the flow layer in bf16 (and fp32) on CUDA against fp32 on the CPU, on
// the committed HF fixtures.
//
// Tolerances, and why:
//  - fp32 CUDA vs fp32 CPU: 1e-4 max abs (same math, different reduction
//    order; TF32 is off by default for LibTorch matmuls).
//  - bf16 CUDA vs fp32 CPU: bf16 keeps 8 mantissa bits (relative rounding
//    2^-9 per op); through 3 layers and the head the error compounds to a few
//    percent of the logit scale. Bound: max abs diff <= 0.05 * max |logit| +
//    0.05, and the argmax token agrees on >= 90% of positions.
#include <filesystem>

#include "gtest/gtest.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/local_trainer.h"

namespace lft {
namespace {

std::string FixtureDir(const std::string& variant) {
  const char* s = std::getenv("LFT_TEST_SRCDIR");
  return std::string(s ? s : ".") + "/tests/fixtures/neox/" + variant;
}

double MaxDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kDouble) - b.to(torch::kCPU, torch::kDouble))
      .abs().max().item<double>();
}

class GpuModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA not available";
    if (!std::filesystem::exists(FixtureDir(GetParam()) + "/model.safetensors")) {
      GTEST_SKIP() << "fixture " << GetParam() << " absent";
    }
  }
};

TEST_P(GpuModelTest, TeacherOnCudaMatchesCpu) {
  auto cpu = GptNeoX::Load(FixtureDir(GetParam()));
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  NeoXLoadOptions f32;
  f32.device = torch::Device(torch::kCUDA);
  NeoXLoadOptions bf16 = f32;
  bf16.dtype = torch::kBFloat16;
  auto g32 = GptNeoX::Load(FixtureDir(GetParam()), f32);
  auto g16 = GptNeoX::Load(FixtureDir(GetParam()), bf16);
  ASSERT_TRUE(g32.ok() && g16.ok());
  auto gen = at::detail::createCPUGenerator(1);
  torch::Tensor ids = at::randint(0, (*cpu)->config().vocab_size, {4, 48}, gen,
                                  torch::TensorOptions().dtype(torch::kLong));
  auto ref = (*cpu)->Forward(ids);
  auto a = (*g32)->Forward(ids);
  auto b = (*g16)->Forward(ids);
  ASSERT_TRUE(ref.ok() && a.ok() && b.ok());
  for (size_t i = 0; i < ref->hidden_states.size(); ++i) {
    EXPECT_LE(MaxDiff(a->hidden_states[i], ref->hidden_states[i]), 1e-4) << "hidden " << i;
  }
  EXPECT_LE(MaxDiff(a->logits, ref->logits), 1e-4);
  const double scale = ref->logits.abs().max().item<double>();
  const double d16 = MaxDiff(b->logits, ref->logits);
  std::printf("%s: fp32 cuda diff %.3g, bf16 cuda diff %.3g (logit scale %.3g)\n",
              GetParam().c_str(), MaxDiff(a->logits, ref->logits), d16, scale);
  EXPECT_LE(d16, 0.05 * scale + 0.05);
  const double agree = (b->logits.to(torch::kCPU).argmax(-1) == ref->logits.argmax(-1))
                           .to(torch::kDouble).mean().item<double>();
  EXPECT_GE(agree, 0.9);

  // KV-cache generation on CUDA (fp32) gives the CPU's greedy tokens.
  NeoXGenerateOptions go;
  go.max_new_tokens = 12;
  auto tc = (*cpu)->Generate(ids.narrow(0, 0, 2).narrow(1, 0, 8), go);
  auto tg = (*g32)->Generate(ids.narrow(0, 0, 2).narrow(1, 0, 8), go);
  ASSERT_TRUE(tc.ok() && tg.ok()) << tg.status();
  EXPECT_TRUE(torch::equal(*tc, *tg));
}

TEST_P(GpuModelTest, FlowLayerBf16OnCudaMatchesCpu) {
  auto cpu = GptNeoX::Load(FixtureDir(GetParam()));
  ASSERT_TRUE(cpu.ok());
  FlowLayerOptions co;
  FlowLayer ref((*cpu)->layer(1), (*cpu)->layer_shape(), co);
  {
    torch::NoGradGuard ng;
    auto gen = at::detail::createCPUGenerator(3);
    ref->ada_out()->weight.copy_(at::normal(0.0, 0.05, ref->ada_out()->weight.sizes(), gen));
  }
  FlowLayerOptions go = co;
  go.device = torch::Device(torch::kCUDA);
  go.dtype = torch::kBFloat16;
  FlowLayer gpu((*cpu)->layer(1), (*cpu)->layer_shape(), go);
  {
    torch::NoGradGuard ng;
    gpu->ada_out()->weight.copy_(ref->ada_out()->weight.to(torch::kCUDA, torch::kBFloat16));
  }
  auto gen = at::detail::createCPUGenerator(4);
  torch::Tensor x = at::normal(0.0, 1.0, {2, 40, (*cpu)->config().hidden_size}, gen)
                        .to(torch::kFloat);
  torch::Tensor t = torch::tensor({0.25f, 0.8f});
  torch::Tensor want = ref->Block(x, t);
  torch::Tensor got = gpu->Block(x.to(torch::kCUDA, torch::kBFloat16), t.to(torch::kCUDA));
  const double scale = want.abs().max().item<double>();
  const double d = MaxDiff(got, want);
  std::printf("%s: flow block bf16 diff %.3g (scale %.3g)\n", GetParam().c_str(), d, scale);
  // One layer in bf16: a few bf16 ulps of the output scale.
  EXPECT_LE(d, 0.03 * scale + 0.03);
}

TEST_P(GpuModelTest, LocalTrainerRunsOnCuda) {
  LocalTrainOptions o;
  o.teacher_dir = FixtureDir(GetParam());
  o.device = "cuda";
  o.dtype = "bf16";
  o.m = 1;
  o.n = 3;
  o.methods = {"fw"};
  o.eval_k = {3};
  o.steps = 40;
  o.batch_size = 4;
  o.seq_len = 32;
  auto r = RunLocalTraining(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(r->Find("fw", 3)->nmse, r->Find("skip")->nmse);
  std::printf("%s", r->FormatTable().c_str());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuModelTest,
                         ::testing::Values("tiny-parallel", "tiny-sequential"));

}  // namespace
}  // namespace lft
