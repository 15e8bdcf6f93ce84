// EvaluateCheckpoint and the recoupling-ratio matrix on tiny random
// teachers built in memory (vocab 64, hidden 16, 4 layers; written to a
// directory too where the regression baseline's engine loads it). The
// regression baseline is compared bit for bit with a regression job's
// engine driven directly (the same operations). Exactness
// tests use layers made identities (zero output projections), so an
// AdaLN-Zero flow layer (velocity 0) reproduces the block bit for bit;
// hand-computed values use GptNeoX::Forward / Extract / Tail, a code path
// independent of the evaluator's single layer-by-layer pass. Tolerances:
// 1e-9 relative where both sides sum the same float64 values in another
// order, 1e-5 where float32 activations differ in rounding.
#include "worker/evaluator/checkpoint_evaluator.h"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "common/base/teacher_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/latent_store.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "worker/evaluator/recoupling_matrix.h"
#include "worker/model/adamw.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/lr_schedule.h"
#include "worker/model/pair_batch.h"
#include "worker/model/tensor_io.h"
#include "worker/trainer/engine/flow_training_engine.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;

constexpr int64_t kVocab = 64, kHidden = 16, kLayers = 4, kSeq = 12;

NeoXConfig TinyConfig() {
  NeoXConfig c;
  c.vocab_size = kVocab;
  c.hidden_size = kHidden;
  c.num_hidden_layers = kLayers;
  c.num_attention_heads = 4;
  c.intermediate_size = 32;
  c.max_position_embeddings = 64;
  c.rotary_pct = 0.5;
  return c;
}

// A random teacher whose layers in `identity` add nothing (zero attention
// and MLP output projections).
std::unique_ptr<GptNeoX> MakeTeacher(uint64_t seed,
                                     const std::vector<int>& identity = {}) {
  auto t = GptNeoX::RandomTensors(TinyConfig(), seed);
  for (int i : identity) {
    const std::string p = "gpt_neox.layers." + std::to_string(i) + ".";
    for (const char* w : {"attention.dense.weight", "attention.dense.bias",
                          "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias"})
      t[p + w].zero_();
  }
  auto model = GptNeoX::FromTensors(TinyConfig(), t);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

// A random teacher written as a directory (config.json, model.safetensors),
// which the regression baseline's engine loads (RegressionOptions::job),
// and the same teacher loaded back in memory. The directory is removed
// with the object.
class TeacherOnDisk {
 public:
  explicit TeacherOnDisk(uint64_t seed) {
    dir_ = std::filesystem::temp_directory_path() /
           ("lft_eval_teacher_" + std::to_string(getpid()) + "_" +
            std::to_string(seed) + "_" + std::to_string(counter_++));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "config.json") << NeoXConfigToJson(TinyConfig());
    EXPECT_TRUE(SaveTensors(GptNeoX::RandomTensors(TinyConfig(), seed),
                            (dir_ / "model.safetensors").string())
                    .ok());
    auto model = GptNeoX::Load(dir_.string());
    EXPECT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  ~TeacherOnDisk() { std::filesystem::remove_all(dir_); }
  const GptNeoX& model() const { return *model_; }
  std::string dir() const { return dir_.string(); }
  // Regression options whose job names this teacher.
  RegressionOptions Regression() const {
    RegressionOptions ro;
    ro.job.mutable_teacher()->set_path(dir());
    return ro;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path dir_;
  std::unique_ptr<GptNeoX> model_;
};

// `n` random sequences; the last one keeps only its first `valid_last`
// tokens (the rest is padding with id `pad`).
HeldOutSet RandomHeldOut(int n, int64_t valid_last, int32_t pad = 5,
                         uint64_t seed = 11) {
  HeldOutSet h;
  h.sequence_length = kSeq;
  auto gen = at::detail::createCPUGenerator(seed);
  torch::Tensor ids = at::randint(0, kVocab, {n, kSeq}, gen,
                                  torch::TensorOptions().dtype(torch::kLong));
  for (int i = 0; i < n; ++i) {
    PackedSequence s;
    s.index = i;
    const int64_t valid = i + 1 == n ? valid_last : kSeq;
    for (int64_t j = 0; j < kSeq; ++j) {
      s.tokens.push_back(
          j < valid ? static_cast<int32_t>(ids[i][j].item<int64_t>()) : pad);
      s.mask.push_back(j < valid ? 1 : 0);
    }
    s.real_tokens = valid;
    h.sequences.push_back(s);
  }
  return h;
}

FlowCheckpoint MakeCheckpoint(const GptNeoX& teacher, int64_t m, int64_t n,
                              FlowInit init, const std::string& method = "fw") {
  FlowLayerOptions fo;
  fo.init = init;
  FlowLayer layer(teacher.layer(m), teacher.layer_shape(), fo);
  FlowCheckpoint c;
  c.header.first_layer = m;
  c.header.end_layer = n;
  c.header.method = method;
  c.header.init = init == FlowInit::kAdaLnZero ? "adaln-zero" : "teacher";
  c.header.step = 7;
  c.header.tokens = 7 * 4 * kSeq;
  c.header.losses = {2.0, 1.5, 1.0};
  c.weights = FlowLayerWeights(*layer);
  return c;
}

torch::Tensor Ids(const HeldOutSet& h) {
  std::vector<int64_t> v;
  for (const auto& s : h.sequences)
    v.insert(v.end(), s.tokens.begin(), s.tokens.end());
  return torch::tensor(v).view(
      {static_cast<int64_t>(h.sequences.size()), kSeq});
}

torch::Tensor Mask(const HeldOutSet& h) {
  std::vector<float> v;
  for (const auto& s : h.sequences)
    v.insert(v.end(), s.mask.begin(), s.mask.end());
  return torch::tensor(v).view(
      {static_cast<int64_t>(h.sequences.size()), kSeq});
}

// Pairs (h_m, h_n) of random sequences, float32 codec, repeated in order.
// `ragged`: pair i keeps its first kSeq - i % 3 tokens, so every batch of
// three or more consecutive pairs is padded.
class VectorPairSource : public TrainingPairSource {
 public:
  VectorPairSource(const GptNeoX& teacher, int64_t m, int64_t n, int count,
                   bool ragged = false) {
    if (count == 0) return;
    HeldOutSet h = RandomHeldOut(count, kSeq, 5, 99);
    auto pair = teacher.Extract(Ids(h), m, n);
    EXPECT_TRUE(pair.ok());
    for (int i = 0; i < count; ++i) {
      const int64_t tokens = ragged ? kSeq - i % 3 : kSeq;
      LatentPairRecord r;
      r.sequence = i;
      r.tokens = static_cast<uint32_t>(tokens);
      r.hidden = kHidden;
      r.codec = TensorCodec::kF32;
      torch::Tensor a = pair->first[i].contiguous(),
                    b = pair->second[i].contiguous();
      EXPECT_TRUE(
          EncodeRows(TensorCodec::kF32,
                     absl::MakeConstSpan(a.data_ptr<float>(), tokens * kHidden),
                     tokens, kHidden, &r.x0)
              .ok());
      EXPECT_TRUE(
          EncodeRows(TensorCodec::kF32,
                     absl::MakeConstSpan(b.data_ptr<float>(), tokens * kHidden),
                     tokens, kHidden, &r.x1)
              .ok());
      pairs_.push_back(r);
    }
  }
  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    if (pairs_.empty()) return false;
    *pair = pairs_[next_++ % pairs_.size()];
    return true;
  }
  std::vector<LatentPairRecord> pairs_;
  size_t next_ = 0;
};

EvaluationPlan Plan() {
  EvaluationPlan p;
  p.steps = {1, 3};
  p.skip_baselines = 3;
  p.regression_baseline = false;
  p.batch_sequences = 2;
  return p;
}

TEST(CheckpointEvaluatorTest,
     ExactFlowLayerGivesZeroErrorAndTeacherPerplexity) {
  // Layers 1 and 2 are identities, so h_3 == h_1 and a zero velocity is exact.
  auto teacher = MakeTeacher(1, {1, 2});
  const HeldOutSet h = RandomHeldOut(3, 7);
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kAdaLnZero), h, Plan(),
      {}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_NE(report->Find("fw", 3, "midpoint"), nullptr);
  int flow_rows = 0;
  for (const EvaluationRow& r : report->rows) {
    if (!r.is_flow()) continue;
    ++flow_rows;
    EXPECT_EQ(r.nmse, 0.0) << r.Label();
    EXPECT_EQ(r.kl_x, 0.0) << r.Label();
    EXPECT_EQ(r.kl_pq, 0.0) << r.Label();
    EXPECT_EQ(r.kl_x_softmax, 0.0) << r.Label();
    EXPECT_EQ(r.kl_x_lens, 0.0) << r.Label();
    EXPECT_EQ(r.ppl, report->teacher_ppl) << r.Label();
    EXPECT_EQ(r.layers_removed, 1);
    EXPECT_EQ(r.nfe, r.solver == "midpoint" ? 2 * r.k : r.k);
  }
  EXPECT_EQ(flow_rows, 4);
  // Skipping the identity layers is exact too.
  EXPECT_EQ(report->Find("skip", 2)->kl_pq, 0.0);
  // acos of a cosine rounded just below 1 is ~1e-8, not 0.
  EXPECT_NEAR(report->angular_distance, 0.0, 1e-6);
  EXPECT_EQ(report->recoupling_ratio, 0.0);
  EXPECT_EQ(report->heldout_tokens, 2 * kSeq + 7);
  // Position j predicts j + 1 when both are valid: 11 + 11 + 6.
  EXPECT_EQ(report->predicted_tokens, 28);
  EXPECT_GT(report->teacher_ppl, 1.0);
}

TEST(CheckpointEvaluatorTest,
     TeacherLayerInitReproducesAOneLayerBlockWithEuler1) {
  // Initialised from teacher layer 1, the flow layer is layer 1 at every t;
  // one Euler step x + (layer(x) - x) is layer 1's output up to rounding.
  auto teacher = MakeTeacher(2);
  const HeldOutSet h = RandomHeldOut(2, kSeq);
  EvaluationPlan plan = Plan();
  plan.steps = {1};
  plan.solvers = {"euler"};
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 2, FlowInit::kTeacherLayer), h,
      plan, {}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  const EvaluationRow* r = report->Find("fw", 1, "euler");
  ASSERT_NE(r, nullptr);
  EXPECT_LT(r->nmse, 1e-10);
  EXPECT_LT(r->kl_pq, 1e-8);
  EXPECT_NEAR(r->ppl, report->teacher_ppl, 1e-5 * report->teacher_ppl);
  EXPECT_EQ(r->layers_removed, 0);
  // A one-layer block has no skip row of equal removal; skip-1..3 remain.
  EXPECT_NE(report->Find("skip", 3), nullptr);
  EXPECT_EQ(report->Find("skip", 4), nullptr);  // m + 4 > L
}

TEST(CheckpointEvaluatorTest, SkipRowsMatchHandComputedValues) {
  auto teacher = MakeTeacher(3);
  const HeldOutSet h = RandomHeldOut(3, 5);
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer), h,
      Plan(), {}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  torch::NoGradGuard ng;
  const torch::Tensor ids = Ids(h), mask = Mask(h).to(torch::kDouble);
  auto full = teacher->Forward(ids);
  ASSERT_TRUE(full.ok());
  const torch::Tensor lp =
      torch::log_softmax(full->logits.to(torch::kDouble), -1);
  const double valid = mask.sum().item<double>();
  const torch::Tensor pred_valid =
      mask.narrow(1, 0, kSeq - 1) * mask.narrow(1, 1, kSeq - 1);
  const torch::Tensor h1 = full->hidden_states[1];
  for (int64_t j = 1; j <= 3; ++j) {
    SCOPED_TRACE(j);
    const EvaluationRow* row = report->Find("skip", j);
    ASSERT_NE(row, nullptr);
    EXPECT_EQ(row->layers_removed, j);
    EXPECT_EQ(row->nfe, 0);
    // h_{1+j}: HF hidden_states for 1 + j < L, else the raw last output.
    torch::Tensor target = 1 + j < kLayers
                               ? full->hidden_states[1 + j]
                               : teacher->Extract(ids, 1, kLayers)->second;
    const torch::Tensor d = (h1 - target).to(torch::kDouble);
    const double nmse =
        (d.pow(2).sum(-1) * mask).sum().item<double>() /
        (target.to(torch::kDouble).pow(2).sum(-1) * mask).sum().item<double>();
    auto q = teacher->Tail(h1, 1 + j);
    ASSERT_TRUE(q.ok());
    const torch::Tensor lq = torch::log_softmax(q->to(torch::kDouble), -1);
    const double kl =
        ((lp.exp() * (lp - lq)).sum(-1) * mask).sum().item<double>() / valid;
    auto ref = teacher->Tail(target, 1 + j);
    ASSERT_TRUE(ref.ok());
    const torch::Tensor lr = torch::log_softmax(ref->to(torch::kDouble), -1);
    const double kl_x =
        ((lr.exp() * (lr - lq)).sum(-1) * mask).sum().item<double>() / valid;
    const torch::Tensor nll =
        -lq.narrow(1, 0, kSeq - 1)
             .gather(-1, ids.narrow(1, 1, kSeq - 1).unsqueeze(-1))
             .squeeze(-1);
    const double ppl = std::exp((nll * pred_valid).sum().item<double>() /
                                pred_valid.sum().item<double>());
    EXPECT_NEAR(row->nmse, nmse, 1e-5 * nmse);
    EXPECT_NEAR(row->kl_pq, kl, 1e-5 * kl + 1e-9);
    EXPECT_NEAR(row->kl_x, kl_x, 1e-5 * kl_x + 1e-9);
    EXPECT_NEAR(row->ppl, ppl, 1e-5 * ppl);
    EXPECT_GT(kl, 1e-4);  // the test can fail: skipping changes the output
  }
}

// Masked token mean of KL(softmax(a) || softmax(b)) over the last dim,
// float64, written out from exp and sums (not the evaluator's
// log_softmax path).
double MaskedMeanKl(const torch::Tensor& a, const torch::Tensor& b,
                    const torch::Tensor& mask) {
  const torch::Tensor x = a.to(torch::kDouble), y = b.to(torch::kDouble);
  const torch::Tensor ex = (x - std::get<0>(x.max(-1, true))).exp();
  const torch::Tensor ey = (y - std::get<0>(y.max(-1, true))).exp();
  const torch::Tensor p = ex / ex.sum(-1, true), q = ey / ey.sum(-1, true);
  const torch::Tensor kl = (p * (p.log() - q.log())).sum(-1);
  const torch::Tensor m = mask.to(torch::kDouble);
  return (kl * m).sum().item<double>() / m.sum().item<double>();
}

// The logit lens written out: final LayerNorm with the teacher's weights,
// then the untied LM head (not GptNeoX::Head).
torch::Tensor Lens(const GptNeoX& teacher, const torch::Tensor& x) {
  const torch::Tensor ln = torch::layer_norm(
      x.to(torch::kFloat), {kHidden}, teacher.final_ln_weight(),
      teacher.final_ln_bias(), teacher.config().layer_norm_eps);
  return torch::matmul(ln, teacher.embed_out().t());
}

TEST(CheckpointEvaluatorTest, LocalKlMeasuresMatchHandComputedValues) {
  auto teacher = MakeTeacher(3);
  const HeldOutSet h = RandomHeldOut(3, 5);
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer), h,
      Plan(), {}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  torch::NoGradGuard ng;
  const torch::Tensor ids = Ids(h), mask = Mask(h);
  auto full = teacher->Forward(ids);
  ASSERT_TRUE(full.ok());
  const torch::Tensor h1 = full->hidden_states[1];
  const EvaluationRow* t = report->Find("teacher");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(std::isnan(t->kl_x_softmax));  // the teacher has no x_hat
  EXPECT_TRUE(std::isnan(t->kl_x_lens));
  for (int64_t j = 1; j <= 3; ++j) {
    SCOPED_TRACE(j);
    const EvaluationRow* row = report->Find("skip", j);
    ASSERT_NE(row, nullptr);
    torch::Tensor target = 1 + j < kLayers
                               ? full->hidden_states[1 + j]
                               : teacher->Extract(ids, 1, kLayers)->second;
    const double softmax = MaskedMeanKl(target, h1, mask);
    const double lens =
        MaskedMeanKl(Lens(*teacher, target), Lens(*teacher, h1), mask);
    // float32 activations of two code paths: 1e-5 relative.
    EXPECT_NEAR(row->kl_x_softmax, softmax, 1e-5 * softmax);
    EXPECT_NEAR(row->kl_x_lens, lens, 1e-5 * lens);
    EXPECT_GT(row->kl_x_softmax, 0.0);
    EXPECT_GT(row->kl_x_lens, 1e-4);
  }
  // Every flow row has both, positive (the teacher-initialised flow layer
  // is not the two-layer block).
  for (const EvaluationRow& r : report->rows) {
    if (!r.is_flow()) continue;
    EXPECT_GT(r.kl_x_softmax, 0.0) << r.Label();
    EXPECT_GT(r.kl_x_lens, 0.0) << r.Label();
  }
}

TEST(CheckpointEvaluatorTest, StudyGridOfKAndSolversIsScored) {
  auto teacher = MakeTeacher(9);
  EvaluationPlan plan = Plan();
  plan.steps = {1, 2, 3, 4, 8};
  plan.solvers = {"euler", "midpoint"};
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer),
      RandomHeldOut(2, kSeq), plan, {}, nullptr);
  ASSERT_TRUE(report.ok()) << report.status();
  for (const std::string solver : {"euler", "midpoint"}) {
    for (int64_t k : {1, 2, 3, 4, 8}) {
      const EvaluationRow* r = report->Find("fw", k, solver);
      ASSERT_NE(r, nullptr) << solver << " " << k;
      EXPECT_EQ(r->nfe, solver == "midpoint" ? 2 * k : k);
    }
  }
}

TEST(CheckpointEvaluatorTest, LinearBaselineIsExactForAnIdentityBlock) {
  // Layers 1 and 2 add nothing: h_3 = h_1, so the least-squares map is the
  // identity up to the 1e-6 ridge.
  auto teacher = MakeTeacher(10, {1, 2});
  EvaluationPlan plan = Plan();
  plan.linear_baseline = true;
  VectorPairSource pairs(*teacher, 1, 3, 8);
  auto report = EvaluateCheckpoint(
      *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer),
      RandomHeldOut(2, kSeq), plan, {}, &pairs);
  ASSERT_TRUE(report.ok()) << report.status();
  const EvaluationRow* r = report->Find("linear");
  ASSERT_NE(r, nullptr);
  EXPECT_LT(r->nmse, 1e-9);
  EXPECT_LT(r->kl_pq, 1e-6);
  EXPECT_LT(r->kl_x_softmax, 1e-6);
}

TEST(CheckpointEvaluatorTest, LinearBaselineFitsTrainingPairsAndBeatsSkip) {
  TeacherOnDisk disk(5);  // the engine loads it
  const GptNeoX* teacher = &disk.model();
  const FlowCheckpoint c =
      MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer);
  EvaluationPlan plan = Plan();
  plan.regression_baseline = true;
  plan.linear_baseline = true;
  plan.linear_tokens = 100;
  RegressionOptions ro = disk.Regression();
  ro.batch_sequences = 4;
  ro.steps = 3;
  VectorPairSource pairs(*teacher, 1, 3, 32);
  auto report =
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &pairs);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->linear_tokens, 100);  // cut to the budget
  EXPECT_EQ(report->regression_tokens, 3 * 4 * kSeq);
  // The regression trained on the same pairs as without the linear fit.
  EvaluationPlan no_linear = plan;
  no_linear.linear_baseline = false;
  VectorPairSource fresh(*teacher, 1, 3, 32);
  auto without = EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq),
                                    no_linear, ro, &fresh);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(without->Find("regression")->nmse,
            report->Find("regression")->nmse);
  EXPECT_EQ(without->Find("linear"), nullptr);

  const EvaluationRow* lin = report->Find("linear");
  ASSERT_NE(lin, nullptr);
  EXPECT_EQ(lin->layers_removed, 2);  // no layer of [1, 3) runs
  EXPECT_EQ(lin->nfe, 0);
  EXPECT_LT(lin->nmse, report->Find("skip", 2)->nmse);
  EXPECT_GT(lin->kl_x_softmax, 0.0);
  EXPECT_GT(lin->kl_x_lens, 0.0);
  std::vector<std::string> labels;
  for (const auto& r : report->rows) labels.push_back(r.Label());
  EXPECT_EQ(labels, (std::vector<std::string>{
                        "teacher", "skip-1", "skip-2", "skip-3", "regression",
                        "linear", "FW k=1 euler", "FW k=3 euler",
                        "FW k=1 midpoint", "FW k=3 midpoint"}));

  // A source smaller than the budget is read once, not repeated.
  plan.linear_tokens = 1000000;
  plan.regression_baseline = false;
  VectorPairSource four(*teacher, 1, 3, 4);
  auto small =
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &four);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->linear_tokens, 4 * kSeq);

  VectorPairSource none(*teacher, 1, 3, 0);
  EXPECT_THAT(
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &none),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               "linear baseline needs stored training pairs"));
  plan.linear_tokens = 0;
  EXPECT_THAT(
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &four),
      StatusIs(absl::StatusCode::kInvalidArgument, "linear_tokens = 0"));
}

class CheckpointCurveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lft_curve_test_" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    auto store = LatentStore::Open(dir_.string(), LatentStoreOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    JobConfig jc;
    jc.hidden = kHidden;
    jc.codec = TensorCodec::kF32;
    ASSERT_TRUE(store_->CreateJob("job", jc).ok());
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Put(const std::string& name, FlowCheckpoint c) {
    auto bytes = SerializeFlowCheckpoint(c);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    ASSERT_TRUE(store_->PutCheckpoint("job", name, *bytes, "").ok());
  }
  std::filesystem::path dir_;
  std::unique_ptr<LatentStore> store_;
};

TEST_F(CheckpointCurveTest, ScoresEveryTrainingCheckpointInStepOrder) {
  // Block [1, 2): a teacher-initialised layer is teacher layer 1 at every t,
  // so one Euler step reproduces h_2 (NMSE ~ 0), more steps do not; an
  // AdaLN-Zero layer has velocity 0, so x1_hat = h_1 at any k (the skip-1
  // values, computed here from GptNeoX::Forward).
  auto teacher = MakeTeacher(12);
  auto at_step = [&](FlowInit init, uint64_t step) {
    FlowCheckpoint c = MakeCheckpoint(*teacher, 1, 2, init);
    c.header.step = step;
    c.header.tokens = step * 1000;
    return c;
  };
  EvaluationHooks hooks;
  std::vector<int64_t> progress;
  hooks.curve_progress = [&](int64_t done, int64_t) {
    progress.push_back(done);
  };
  const HeldOutSet h = RandomHeldOut(3, 5);
  CurvePlan plan;
  plan.k = 3;
  plan.solver = "euler";
  plan.batch_sequences = 2;
  auto empty =
      ScoreCheckpointCurve(*teacher, 1, 2, h, store_.get(), "job", plan);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());

  // Written out of order, beside a report that is not a training checkpoint.
  Put(TrainingCheckpointName(30), at_step(FlowInit::kTeacherLayer, 30));
  Put(TrainingCheckpointName(10), at_step(FlowInit::kAdaLnZero, 10));
  Put(TrainingCheckpointName(20), at_step(FlowInit::kTeacherLayer, 20));
  ASSERT_TRUE(store_->PutCheckpoint("job", "report.json", "{}", "").ok());
  auto curve =
      ScoreCheckpointCurve(*teacher, 1, 2, h, store_.get(), "job", plan, hooks);
  ASSERT_TRUE(curve.ok()) << curve.status();
  ASSERT_EQ(curve->size(), 3u);
  EXPECT_EQ(progress, (std::vector<int64_t>{0, 1, 2, 3}));
  for (size_t i = 0; i < 3; ++i) {
    const CurvePoint& c = (*curve)[i];
    EXPECT_EQ(c.step, 10 * (i + 1));
    EXPECT_EQ(c.tokens, 10000 * (i + 1));
    EXPECT_EQ(c.checkpoint, TrainingCheckpointName(c.step));
    EXPECT_EQ(c.k, 3);
    EXPECT_EQ(c.solver, "euler");
  }
  torch::NoGradGuard ng;
  const torch::Tensor mask = Mask(h).to(torch::kDouble);
  auto full = teacher->Forward(Ids(h));
  ASSERT_TRUE(full.ok());
  const torch::Tensor h1 = full->hidden_states[1].to(torch::kDouble);
  const torch::Tensor h2 = full->hidden_states[2].to(torch::kDouble);
  const double skip_nmse =
      ((h1 - h2).pow(2).sum(-1) * mask).sum().item<double>() /
      (h2.pow(2).sum(-1) * mask).sum().item<double>();
  const CurvePoint& zero = (*curve)[0];
  EXPECT_NEAR(zero.nmse, skip_nmse, 1e-5 * skip_nmse);
  EXPECT_NEAR(zero.nmse_k1, skip_nmse, 1e-5 * skip_nmse);
  const double skip_kl = MaskedMeanKl(h2, h1, Mask(h));
  EXPECT_NEAR(zero.kl_x_softmax, skip_kl, 1e-5 * skip_kl);
  const CurvePoint& layer = (*curve)[1];
  EXPECT_LT(layer.nmse_k1, 1e-10);
  EXPECT_GT(layer.nmse, 1e3 * layer.nmse_k1 + 1e-9);  // k = 3 is not exact
  EXPECT_EQ((*curve)[2].nmse, layer.nmse);            // the same weights

  // A checkpoint of another block is refused, naming it.
  Put(TrainingCheckpointName(40),
      MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer));
  EXPECT_THAT(
      ScoreCheckpointCurve(*teacher, 1, 2, h, store_.get(), "job", plan),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "step-0000000040\" of job job replaces block [1, 3)"));
  plan.solver = "rk4";
  EXPECT_THAT(
      ScoreCheckpointCurve(*teacher, 1, 2, h, store_.get(), "job", plan),
      StatusIs(absl::StatusCode::kInvalidArgument, "rk4"));
  plan.solver = "euler";
  EXPECT_THAT(
      ScoreCheckpointCurve(*teacher, 1, 2, h, store_.get(), "nope", plan),
      StatusIs(absl::StatusCode::kNotFound, "nope"));
}

TEST(CheckpointEvaluatorTest, PaddingIsIgnored) {
  auto teacher = MakeTeacher(4);
  const FlowCheckpoint c =
      MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer);
  auto a = EvaluateCheckpoint(*teacher, c, RandomHeldOut(3, 6, 5), Plan(), {},
                              nullptr);
  auto b = EvaluateCheckpoint(*teacher, c, RandomHeldOut(3, 6, 40), Plan(), {},
                              nullptr);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->rows.size(), b->rows.size());
  for (size_t i = 0; i < a->rows.size(); ++i) {
    SCOPED_TRACE(a->rows[i].Label());
    EXPECT_DOUBLE_EQ(a->rows[i].nmse, b->rows[i].nmse);
    EXPECT_DOUBLE_EQ(a->rows[i].kl_pq, b->rows[i].kl_pq);
    EXPECT_DOUBLE_EQ(a->rows[i].ppl, b->rows[i].ppl);
  }
  // Batching does not change token-weighted means.
  EvaluationPlan one = Plan();
  one.batch_sequences = 3;
  auto c3 =
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(3, 6, 5), one, {}, nullptr);
  ASSERT_TRUE(c3.ok());
  EXPECT_NEAR(c3->rows.back().ppl, a->rows.back().ppl,
              1e-9 * a->rows.back().ppl);
}

TEST(CheckpointEvaluatorTest, RegressionBaselineTrainsOnPairs) {
  TeacherOnDisk disk(5);  // the engine loads it
  const GptNeoX* teacher = &disk.model();
  const FlowCheckpoint c =
      MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer);
  EvaluationPlan plan = Plan();
  plan.regression_baseline = true;
  RegressionOptions ro = disk.Regression();
  ro.batch_sequences = 4;
  ro.learning_rate = 3e-3;
  ro.warmup_steps = 2;
  ro.steps = 1;
  VectorPairSource pairs(*teacher, 1, 3, 32);
  auto short_run =
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &pairs);
  ASSERT_TRUE(short_run.ok()) << short_run.status();
  ro.steps = 60;
  auto long_run =
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &pairs);
  ASSERT_TRUE(long_run.ok()) << long_run.status();
  EXPECT_EQ(long_run->regression_steps, 60);
  const EvaluationRow* r1 = short_run->Find("regression");
  const EvaluationRow* r60 = long_run->Find("regression");
  ASSERT_NE(r60, nullptr);
  EXPECT_EQ(r60->layers_removed, 1);
  EXPECT_EQ(r60->nfe, 1);
  EXPECT_LT(r60->nmse, r1->nmse);
  // Rows in the order of the paper's table.
  std::vector<std::string> labels;
  for (const auto& r : long_run->rows) labels.push_back(r.Label());
  EXPECT_EQ(labels, (std::vector<std::string>{
                        "teacher", "skip-1", "skip-2", "skip-3", "regression",
                        "FW k=1 euler", "FW k=3 euler", "FW k=1 midpoint",
                        "FW k=3 midpoint"}));

  VectorPairSource none(*teacher, 1, 3, 0);
  EXPECT_THAT(
      EvaluateCheckpoint(*teacher, c, RandomHeldOut(2, kSeq), plan, ro, &none),
      StatusIs(absl::StatusCode::kFailedPrecondition, "has none"));
}

// What the regression baseline must equal: the engine of a
// METHOD_REGRESSION job over `teacher_dir`, driven directly as TrainerRunner
// drives it with one rank (ComputeGradients, ApplyGradients at the warm-up
// + cosine rate) over ro.steps batches of ro.batch_sequences records of
// `source`, in the order read. *losses gets every step's loss.
void TrainReferenceRegression(const std::string& teacher_dir, int64_t m,
                              int64_t n, const RegressionOptions& ro,
                              TrainingPairSource* source,
                              FlowCheckpoint* checkpoint,
                              std::vector<double>* losses) {
  lft::v1::JobSpec spec;
  spec.mutable_teacher()->set_path(teacher_dir);
  spec.mutable_block()->set_first_layer(static_cast<uint32_t>(m));
  spec.mutable_block()->set_end_layer(static_cast<uint32_t>(n));
  spec.mutable_training()->set_method(lft::v1::METHOD_REGRESSION);
  spec.mutable_training()->set_weight_decay(ro.weight_decay);
  spec.mutable_training()->set_seed(ro.seed);
  auto engine = NewFlowTrainingEngine(spec, "cpu");
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<LatentPairRecord> batch(ro.batch_sequences);
  for (int64_t step = 0; step < ro.steps; ++step) {
    for (LatentPairRecord& r : batch) ASSERT_TRUE(*source->Next(&r));
    ASSERT_TRUE((*engine)->ComputeGradients(batch, step).ok());
    auto loss = (*engine)->ApplyGradients(
        1.0, ro.gradient_clip_norm,
        WarmupCosineLr(ro.learning_rate, ro.min_lr_ratio, ro.warmup_steps,
                       ro.steps, step));
    ASSERT_TRUE(loss.ok()) << loss.status();
    losses->push_back(*loss);
  }
  auto blob = (*engine)->SaveCheckpoint(TrainingPosition(), 1);
  ASSERT_TRUE(blob.ok()) << blob.status();
  auto parsed = ParseFlowCheckpoint(*blob);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  *checkpoint = std::move(*parsed);
}

// Settings that reach every part of the update: weight decay, active
// clipping, warm-up and the cosine, a seed other than 0.
RegressionOptions EveryKnob(const TeacherOnDisk& disk) {
  RegressionOptions ro = disk.Regression();
  ro.steps = 7;
  ro.batch_sequences = 3;
  ro.learning_rate = 3e-3;
  ro.min_lr_ratio = 0.2;
  ro.weight_decay = 0.05;
  ro.warmup_steps = 2;
  ro.gradient_clip_norm = 0.05;
  ro.seed = 3;
  return ro;
}

// The regression baseline is what a regression job trains: on the CPU the
// evaluator's layer and losses equal, bit for bit, those of a
// METHOD_REGRESSION engine driven directly over the same records in the
// same order at the same learning rates (same code, same operations, so no
// tolerance), and so does every metric of its row.
TEST(CheckpointEvaluatorTest, RegressionBaselineIsWhatARegressionJobTrains) {
  TeacherOnDisk disk(5);
  const RegressionOptions ro = EveryKnob(disk);
  for (bool ragged : {false, true}) {
    SCOPED_TRACE(ragged ? "padded batches" : "full-length batches");
    VectorPairSource reference_pairs(disk.model(), 1, 3, 10, ragged);
    FlowCheckpoint want;
    std::vector<double> want_losses;
    ASSERT_NO_FATAL_FAILURE(TrainReferenceRegression(
        disk.dir(), 1, 3, ro, &reference_pairs, &want, &want_losses));

    VectorPairSource pairs(disk.model(), 1, 3, 10, ragged);
    std::vector<int64_t> progress;
    EvaluationHooks hooks;
    hooks.regression_progress = [&](int64_t done, int64_t total) {
      EXPECT_EQ(total, ro.steps);
      progress.push_back(done);
    };
    auto got = TrainRegressionBaseline(disk.model(), 1, 3, ro, &pairs, hooks);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(progress, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6}));
    EXPECT_EQ(got->header.method, "regression");
    EXPECT_EQ(got->header.first_layer, 1);
    EXPECT_EQ(got->header.end_layer, 3);
    EXPECT_EQ(got->header.step, 7u);
    EXPECT_EQ(got->header.seed, 3u);
    // Valid tokens only: those of the 21 pairs read (12, 11, 10, 12, ...
    // tokens when ragged).
    uint64_t valid = 0;
    for (size_t i = 0; i < 21; ++i) {
      valid += reference_pairs.pairs_[i % reference_pairs.pairs_.size()].tokens;
    }
    EXPECT_EQ(valid, ragged ? 234u : 21u * kSeq);
    EXPECT_EQ(got->header.tokens, valid);
    EXPECT_EQ(got->header.losses, want_losses);
    ASSERT_EQ(got->weights.size(), want.weights.size());
    for (const auto& [name, w] : want.weights) {
      SCOPED_TRACE(name);
      ASSERT_EQ(got->weights.count(name), 1u);
      EXPECT_TRUE(torch::equal(got->weights.at(name), w));
    }
    // The AdaLN path trained too (t = 0 is a constant modulation, not
    // nothing): the last AdaLN Linear moved from its zero init.
    EXPECT_GT(want.weights.at("ada_out.weight").abs().max().item<float>(),
              0.0f);

    // Through EvaluateCheckpoint: the baseline's row equals the row of the
    // reference layer scored as a regression checkpoint.
    const FlowCheckpoint flow =
        MakeCheckpoint(disk.model(), 1, 3, FlowInit::kTeacherLayer);
    EvaluationPlan plan = Plan();
    plan.regression_baseline = true;
    VectorPairSource fresh(disk.model(), 1, 3, 10, ragged);
    auto trained = EvaluateCheckpoint(disk.model(), flow, RandomHeldOut(3, 7),
                                      plan, ro, &fresh);
    ASSERT_TRUE(trained.ok()) << trained.status();
    auto scored = EvaluateCheckpoint(disk.model(), want, RandomHeldOut(3, 7),
                                     plan, {}, nullptr);
    ASSERT_TRUE(scored.ok()) << scored.status();
    const EvaluationRow* a = trained->Find("regression");
    const EvaluationRow* b = scored->Find("regression");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->nmse, b->nmse);
    EXPECT_EQ(a->kl_x, b->kl_x);
    EXPECT_EQ(a->kl_pq, b->kl_pq);
    EXPECT_EQ(a->ppl, b->ppl);
    EXPECT_EQ(a->kl_x_softmax, b->kl_x_softmax);
    EXPECT_EQ(a->kl_x_lens, b->kl_x_lens);
    EXPECT_EQ(trained->regression_steps, 7);
    EXPECT_EQ(trained->regression_final_loss, want_losses.back());
    EXPECT_EQ(trained->regression_tokens,
              static_cast<int64_t>(got->header.tokens));
  }
}

// The baseline as the evaluator trained it before it went through the
// engine (float32 eager: Block(x0, t = 0), MaskedMse with the batch's mask,
// AdamW, clipping), kept as an independent check that the engine's
// regression is the same model and loss.
void TrainEagerRegression(const GptNeoX& teacher, int64_t m,
                          const RegressionOptions& o,
                          TrainingPairSource* source,
                          std::map<std::string, torch::Tensor>* weights,
                          std::vector<double>* losses) {
  FlowLayerOptions fo;
  fo.init = FlowInit::kTeacherLayer;
  fo.seed = o.seed;
  FlowLayer layer(teacher.layer(m), teacher.layer_shape(), fo);
  AdamW opt({AdamWGroup{layer->parameters(), o.weight_decay}});
  torch::Tensor grad = torch::zeros_like(opt.master());
  std::vector<LatentPairRecord> records(o.batch_sequences);
  for (int64_t step = 0; step < o.steps; ++step) {
    for (LatentPairRecord& r : records) ASSERT_TRUE(*source->Next(&r));
    PairBatch b;
    ASSERT_TRUE(AssemblePairBatch(records, kHidden, &b).ok());
    for (torch::Tensor& p : layer->parameters()) p.mutable_grad().reset();
    torch::Tensor loss = MaskedMse(
        layer->Block(b.x0, torch::zeros({b.x0.size(0)}, b.x0.options())), b.x1,
        b.mask);
    loss.backward();
    opt.GatherGradients(grad);
    ClipGradientNorm(grad, o.gradient_clip_norm);
    opt.Step(grad, WarmupCosineLr(o.learning_rate, o.min_lr_ratio,
                                  o.warmup_steps, o.steps, step));
    losses->push_back(loss.item<double>());
  }
  *weights = FlowLayerWeights(*layer);
}

// The engine's regression (x0 + Velocity(x0, t = 0), masked MSE, mean over
// valid tokens and features) is the baseline the evaluator trained before:
// for padded batches both take the masked mean, the same operations, and
// agree bit for bit. For full-length batches the engine passes no mask
// and MaskedMse takes a plain mean(), whose float32 sum runs in another
// order than the masked sum / count: the losses then differ in the last
// bits (1e-6 relative allows 8 ulps) and the weights, after 7 AdamW steps
// that divide by sqrt(v), by far less than one step's change (2e-5
// absolute against lr 3e-3). At this size the two reductions happen to
// agree (the measured gap is 0); the bound is for wider batches, whose
// sums are blocked differently.
TEST(CheckpointEvaluatorTest, RegressionBaselineKeepsTheEagerLoopsNumerics) {
  TeacherOnDisk disk(5);
  const RegressionOptions ro = EveryKnob(disk);
  for (bool ragged : {true, false}) {
    SCOPED_TRACE(ragged ? "padded batches" : "full-length batches");
    VectorPairSource eager_pairs(disk.model(), 1, 3, 10, ragged);
    std::map<std::string, torch::Tensor> want;
    std::vector<double> want_losses;
    ASSERT_NO_FATAL_FAILURE(TrainEagerRegression(
        disk.model(), 1, ro, &eager_pairs, &want, &want_losses));
    VectorPairSource pairs(disk.model(), 1, 3, 10, ragged);
    auto got = TrainRegressionBaseline(disk.model(), 1, 3, ro, &pairs);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->header.losses.size(), want_losses.size());
    double max_weight_gap = 0;
    for (const auto& [name, w] : want) {
      SCOPED_TRACE(name);
      const torch::Tensor& g = got->weights.at(name);
      if (ragged) {
        EXPECT_TRUE(torch::equal(g, w));
      }
      max_weight_gap =
          std::max(max_weight_gap, (g - w).abs().max().item<double>());
    }
    for (size_t i = 0; i < want_losses.size(); ++i) {
      if (ragged) {
        EXPECT_EQ(got->header.losses[i], want_losses[i]) << i;
      } else {
        EXPECT_NEAR(got->header.losses[i], want_losses[i],
                    1e-6 * want_losses[i])
            << i;
      }
    }
    EXPECT_LE(max_weight_gap, ragged ? 0.0 : 2e-5);
  }
}

// Cancellation is polled before every step of the baseline's training;
// the steps after it are not taken.
TEST(CheckpointEvaluatorTest, RegressionBaselineStopsWhenCancelled) {
  TeacherOnDisk disk(5);
  RegressionOptions ro = EveryKnob(disk);
  ro.steps = 50;
  VectorPairSource pairs(disk.model(), 1, 3, 10);
  int64_t last_step = -1;
  EvaluationHooks hooks;
  hooks.regression_progress = [&](int64_t done, int64_t) { last_step = done; };
  hooks.cancelled = [&]() { return last_step >= 3; };
  EvaluationPlan plan = Plan();
  plan.regression_baseline = true;
  EXPECT_THAT(EvaluateCheckpoint(
                  disk.model(),
                  MakeCheckpoint(disk.model(), 1, 3, FlowInit::kTeacherLayer),
                  RandomHeldOut(2, kSeq), plan, ro, &pairs, hooks),
              StatusIs(absl::StatusCode::kCancelled, "cancelled"));
  EXPECT_EQ(last_step, 3);
  // Steps 0..3 read their batches, nothing after (no prefetch on the CPU).
  EXPECT_EQ(pairs.next_, 4u * 3u);
}

TEST(CheckpointEvaluatorTest, RegressionBaselineFailsOnANonFiniteLoss) {
  TeacherOnDisk disk(5);
  RegressionOptions ro = EveryKnob(disk);
  ro.steps = 3;
  VectorPairSource pairs(disk.model(), 1, 3, 4);
  // One target row of infinities: the MSE of that batch is infinite.
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(pairs.pairs_[0].x1.data(), &inf, sizeof(inf));
  EXPECT_THAT(TrainRegressionBaseline(disk.model(), 1, 3, ro, &pairs),
              StatusIs(absl::StatusCode::kInternal,
                       "training the regression baseline: step 0: the loss "
                       "became inf"));
}

TEST(CheckpointEvaluatorTest, RegressionBaselineNeedsTheJobsTeacherDirectory) {
  auto teacher = MakeTeacher(5);
  VectorPairSource pairs(*teacher, 1, 3, 4);
  RegressionOptions ro;
  ro.steps = 2;
  ro.batch_sequences = 2;
  EXPECT_THAT(TrainRegressionBaseline(*teacher, 1, 3, ro, &pairs),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "needs the job's teacher directory"));
  ro.job.mutable_teacher()->set_path("/nonexistent/teacher");
  EXPECT_THAT(TrainRegressionBaseline(*teacher, 1, 3, ro, &pairs),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/teacher"));
  // Without pairs the error is the missing pairs, before any teacher load.
  VectorPairSource none(*teacher, 1, 3, 0);
  EXPECT_THAT(TrainRegressionBaseline(*teacher, 1, 3, ro, &none),
              StatusIs(absl::StatusCode::kFailedPrecondition, "has none"));
}

TEST(CheckpointEvaluatorTest, RejectsCheckpointsOfOtherTeachersAndBadPlans) {
  auto teacher = MakeTeacher(6);
  const HeldOutSet h = RandomHeldOut(1, kSeq);
  FlowCheckpoint c = MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer);
  c.header.end_layer = kLayers + 2;
  EXPECT_THAT(EvaluateCheckpoint(*teacher, c, h, Plan(), {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, "outside"));
  NeoXConfig wide = TinyConfig();
  wide.hidden_size = 32;
  auto other = GptNeoX::FromTensors(wide, GptNeoX::RandomTensors(wide, 1));
  ASSERT_TRUE(other.ok());
  EXPECT_THAT(
      EvaluateCheckpoint(*teacher,
                         MakeCheckpoint(**other, 1, 3, FlowInit::kTeacherLayer),
                         h, Plan(), {}, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, "another teacher"));
  EvaluationPlan bad = Plan();
  bad.solvers = {"rk4"};
  EXPECT_THAT(
      EvaluateCheckpoint(
          *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer), h,
          bad, {}, nullptr),
      StatusIs(absl::StatusCode::kInvalidArgument, "rk4"));
}

TEST(CheckpointEvaluatorTest, CancellationStopsBetweenUnitsOfWork) {
  auto teacher = MakeTeacher(7);
  int polls = 0;
  EvaluationHooks hooks;
  hooks.cancelled = [&]() { return ++polls > 3; };
  int64_t progress = 0;
  hooks.progress = [&](int64_t s, int64_t) { progress = s; };
  EXPECT_THAT(
      EvaluateCheckpoint(
          *teacher, MakeCheckpoint(*teacher, 1, 3, FlowInit::kTeacherLayer),
          RandomHeldOut(4, kSeq), Plan(), {}, nullptr, hooks),
      StatusIs(absl::StatusCode::kCancelled, "cancelled"));
  EXPECT_EQ(progress, 0);
}

TEST(RecouplingMatrixTest,
     UpperTriangularWithinUnitIntervalAndZeroForIdentityBlock) {
  auto teacher = MakeTeacher(8, {2});  // layer 2 adds nothing: h_3 == h_2
  RecouplingMatrixOptions o;
  o.max_tokens = 30;
  auto m = ComputeRecouplingMatrix(*teacher, RandomHeldOut(3, 4), o);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->tokens, 28);
  EXPECT_EQ(m->solver, "hungarian");
  ASSERT_EQ(m->ratio.size(), static_cast<size_t>(kLayers));
  for (int64_t a = 0; a < kLayers; ++a) {
    ASSERT_EQ(m->ratio[a].size(), static_cast<size_t>(kLayers + 1));
    for (int64_t b = 0; b <= kLayers; ++b) {
      if (b <= a) {
        EXPECT_TRUE(std::isnan(m->ratio[a][b])) << a << "," << b;
        continue;
      }
      EXPECT_GE(m->ratio[a][b], 0.0);
      EXPECT_LE(m->ratio[a][b], 1.0);
      EXPECT_GE(m->block_influence[a][b], 0.0);
    }
  }
  EXPECT_EQ(m->ratio[2][3], 0.0);
  EXPECT_NEAR(m->block_influence[2][3], 0.0, 1e-12);
  auto json = nlohmann::json::parse(m->ToJson());
  EXPECT_TRUE(json["ratio"][1][0].is_null());
  EXPECT_EQ(json["ratio"][2][3].get<double>(), 0.0);
  EXPECT_EQ(m->RenderHeatmapPng().substr(0, 4), "\x89PNG");
  EXPECT_NE(m->FormatTable().find("0.000"), std::string::npos);

  o.sinkhorn = true;
  auto s = ComputeRecouplingMatrix(*teacher, RandomHeldOut(3, 4), o);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_NEAR(s->ratio[2][3], 0.0, 0.2);
}

}  // namespace
}  // namespace lft
