// EvaluationRunner end to end on a tiny teacher directory (random weights,
// a BpeTrainer tokenizer), a held-out jsonl.zst file and an embedded store
// holding a flow checkpoint and training pairs; plus the error paths and
// the lft-analyze / lft-export command lines.
#include "worker/evaluator/evaluation_runner.h"

#include <sys/wait.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/corpus/jsonl_zst.h"
#include "common/corpus/synthetic_corpus.h"
#include "common/text/bpe_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/checkpoint_names.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/unit/worker/runner_test_util.h"
#include "worker/evaluator/evaluation_report.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using ::lft::testing::StatusIs;
using ::testing::HasSubstr;

using FakeContext = testing_util::RecordingTaskContext;

std::string DocText(int64_t i) {
  return MakeSyntheticDocument(5, i).text.substr(0, 200);
}

int RunCommand(const std::string& cmd) {
  const int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

class EvaluationRunnerTest : public ::testing::Test {
 protected:
  static constexpr int kSeqLen = 16;

  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("eval_runner_test_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "teacher");
    config_.vocab_size = 300;
    config_.hidden_size = 32;
    config_.num_hidden_layers = 4;
    config_.num_attention_heads = 4;
    config_.intermediate_size = 64;
    config_.max_position_embeddings = 64;
    config_.rotary_pct = 0.5;
    const std::string dir = (root_ / "teacher").string();
    ASSERT_TRUE(testing_util::WriteRandomTeacher(dir, config_, 3).ok());
    std::vector<std::string> texts;
    for (int i = 0; i < 30; ++i) texts.push_back(DocText(i));
    auto json = testing_util::WriteTrainedTokenizer(dir, 300, texts);
    ASSERT_TRUE(json.ok()) << json.status();
    heldout_ = (root_ / "val.jsonl.zst").string();
    ASSERT_TRUE(
        testing_util::WritePileFile(
            heldout_, {DocText(100), DocText(101), DocText(102), DocText(103)})
            .ok());
    auto model = GptNeoX::Load((root_ / "teacher").string());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    pool_ = std::make_unique<PairStorePool>((root_ / "store").string(),
                                            RemotePairStoreOptions());
    auto store = pool_->Get("");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *store;
    JobConfig jc;
    jc.hidden = 32;
    jc.codec = TensorCodec::kF32;
    ASSERT_TRUE(store_->CreateJob("job1", jc).ok());
  }
  void TearDown() override {
    pool_.reset();
    fs::remove_all(root_);
  }

  // Training pairs (h_1, h_3) of random sequences.
  void WritePairs(int count) {
    auto gen = at::detail::createCPUGenerator(42);
    torch::Tensor ids = at::randint(0, 300, {count, kSeqLen}, gen,
                                    torch::TensorOptions().dtype(torch::kLong));
    auto pair = model_->Extract(ids, 1, 3);
    ASSERT_TRUE(pair.ok());
    std::vector<LatentPairRecord> records;
    for (int i = 0; i < count; ++i) {
      LatentPairRecord r;
      r.sequence = i;
      r.tokens = kSeqLen;
      r.hidden = 32;
      r.codec = TensorCodec::kF32;
      torch::Tensor a = pair->first[i].contiguous();
      torch::Tensor b = pair->second[i].contiguous();
      ASSERT_TRUE(
          EncodeRows(TensorCodec::kF32,
                     absl::MakeConstSpan(a.data_ptr<float>(), kSeqLen * 32),
                     kSeqLen, 32, &r.x0)
              .ok());
      ASSERT_TRUE(
          EncodeRows(TensorCodec::kF32,
                     absl::MakeConstSpan(b.data_ptr<float>(), kSeqLen * 32),
                     kSeqLen, 32, &r.x1)
              .ok());
      records.push_back(r);
    }
    ASSERT_TRUE(
        store_->PutPairs("job1", records, absl::Now() + absl::Seconds(10))
            .ok());
  }

  std::string CheckpointBytes(const GptNeoX& teacher, int64_t m, int64_t n,
                              uint64_t step = 40) {
    FlowLayerOptions fo;
    fo.seed = 9;
    FlowLayer layer(teacher.layer(m), teacher.layer_shape(), fo);
    {
      // Perturb the AdaLN output so the flow layer is not one teacher layer.
      torch::NoGradGuard ng;
      torch::manual_seed(9);  // the same checkpoint in every test order
      layer->ada_out()->weight.normal_(0, 0.02);
    }
    FlowCheckpoint c;
    c.header.first_layer = m;
    c.header.end_layer = n;
    c.header.method = "fw";
    c.header.step = step;
    c.header.tokens = step * 8 * kSeqLen;
    for (uint64_t i = 0; i < step; ++i) {
      c.header.losses.push_back(3.0 / (1 + 0.1 * static_cast<double>(i)));
    }
    c.weights = FlowLayerWeights(*layer);
    auto bytes = SerializeFlowCheckpoint(c);
    EXPECT_TRUE(bytes.ok());
    return *bytes;
  }

  void PutCheckpoint(const std::string& name, const std::string& bytes) {
    ASSERT_TRUE(store_->PutCheckpoint("job1", name, bytes, "").ok());
  }

  lft::v1::Task MakeTask(const std::string& checkpoint) const {
    lft::v1::Task t;
    t.set_task_id("e1");
    t.set_job_id("job1");
    auto* spec = t.mutable_spec();
    spec->set_kind(lft::v1::JOB_KIND_COMPRESS);
    spec->mutable_teacher()->set_path((root_ / "teacher").string());
    spec->mutable_block()->set_first_layer(1);
    spec->mutable_block()->set_end_layer(3);
    spec->set_sequence_length(kSeqLen);
    auto* tr = spec->mutable_training();
    tr->set_max_steps(1000);
    tr->set_global_batch_sequences(4);
    tr->set_learning_rate(3e-3);
    tr->set_weight_decay(0.01);
    tr->set_warmup_steps(5);
    tr->set_gradient_clip_norm(1.0);
    tr->set_seed(7);
    auto* ev = spec->mutable_evaluation();
    for (uint32_t k : {1u, 3u, 8u}) ev->add_steps(k);
    ev->add_solvers(lft::v1::SOLVER_EULER);
    ev->add_solvers(lft::v1::SOLVER_MIDPOINT);
    ev->add_heldout_paths(heldout_);
    ev->set_max_sequences(6);
    ev->set_skip_baselines(2);
    ev->set_regression_baseline(true);
    t.mutable_evaluation()->set_checkpoint(checkpoint);
    return t;
  }

  EvaluationRunnerOptions Options() {
    EvaluationRunnerOptions o;
    o.stores = pool_.get();
    o.batch_sequences = 2;
    o.max_regression_steps = 30;  // the spec asks for 1000
    return o;
  }

  fs::path root_;
  std::string heldout_;
  NeoXConfig config_;
  std::unique_ptr<GptNeoX> model_;
  std::unique_ptr<PairStorePool> pool_;
  PairStore* store_ = nullptr;
};

TEST_F(EvaluationRunnerTest, WritesReportsWithEveryRowToTheStore) {
  WritePairs(8);
  PutCheckpoint("ckpt-40", CheckpointBytes(*model_, 1, 3));
  MetricsRegistry metrics;
  EvaluationRunnerOptions o = Options();
  o.metrics = &metrics;
  EvaluationRunner runner(o);
  FakeContext ctx;
  auto result = runner.Run(MakeTask("ckpt-40"), &ctx);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->checkpoint, "report.json");

  auto json = store_->GetCheckpoint("job1", "report.json");
  ASSERT_TRUE(json.ok()) << json.status();
  auto report = ParseEvaluationReport(*json);
  ASSERT_TRUE(report.ok()) << report.status();
  std::vector<std::string> labels;
  for (const auto& r : report->rows) labels.push_back(r.Label());
  EXPECT_EQ(labels,
            (std::vector<std::string>{
                "teacher", "skip-1", "skip-2", "regression", "FW k=1 euler",
                "FW k=3 euler", "FW k=8 euler", "FW k=1 midpoint",
                "FW k=3 midpoint", "FW k=8 midpoint"}));
  EXPECT_EQ(report->job, "job1");
  EXPECT_EQ(report->checkpoint, "ckpt-40");
  EXPECT_EQ(report->checkpoint_step, 40u);
  EXPECT_EQ(report->losses.size(), 40u);
  EXPECT_EQ(report->regression_steps, 30);
  EXPECT_EQ(report->heldout_files, std::vector<std::string>{heldout_});
  EXPECT_EQ(report->heldout_sequences,
            static_cast<int64_t>(ctx.last.sequences_done));
  EXPECT_GT(report->heldout_sequences, 1);
  EXPECT_EQ(report->recoupling_tokens,
            std::min<int64_t>(256, report->heldout_tokens));
  EXPECT_EQ(report->Find("FW", 8, "midpoint"), nullptr);  // method is "fw"
  EXPECT_EQ(report->Find("fw", 8, "midpoint")->nfe, 16);
  EXPECT_GT(report->Find("skip", 2)->kl_pq, 0.0);

  auto md = store_->GetCheckpoint("job1", "report.md");
  ASSERT_TRUE(md.ok()) << md.status();
  EXPECT_THAT(*md, HasSubstr("| method | layers removed | k | NFE | KL_x | "
                             "KL_x softmax | KL_x lens | NMSE | KL_PQ | PPL "
                             "|"));
  EXPECT_THAT(*md, HasSubstr("skip-1 (1 layer removed by each)"));
  std::cout << *md;  // the table the lead quotes in docs
  for (const char* png : {"loss.png", "kl_vs_k.png"}) {
    auto bytes = store_->GetCheckpoint("job1", png);
    ASSERT_TRUE(bytes.ok()) << png << ": " << bytes.status();
    EXPECT_EQ(bytes->substr(0, 8), "\x89PNG\r\n\x1a\n") << png;
  }
  const std::string text = metrics.RenderText();
  EXPECT_THAT(text, HasSubstr("lft_eval_kl{"));
  EXPECT_THAT(text, HasSubstr("method=\"skip-2\""));
  EXPECT_THAT(text, HasSubstr("lft_eval_perplexity{"));
  EXPECT_THAT(text, HasSubstr("lft_eval_sequences_total{"));
}

// The fidelity study's spec fields, under the JSON names its driver reads:
// linear row, regression at an explicit budget (not capped by the
// runner's max_regression_steps), and the training curve over every
// stored step-N checkpoint at the job's training k and solver.
TEST_F(EvaluationRunnerTest, StudyFieldsReachTheReport) {
  WritePairs(8);
  for (uint64_t step : {30, 10, 20}) {
    PutCheckpoint(TrainingCheckpointName(step),
                  CheckpointBytes(*model_, 1, 3, step));
  }
  lft::v1::Task task = MakeTask(TrainingCheckpointName(30));
  auto* ev = task.mutable_spec()->mutable_evaluation();
  ev->set_linear_baseline(true);
  ev->set_linear_tokens(64);
  ev->set_regression_steps(40);  // above Options().max_regression_steps
  ev->set_regression_batch_sequences(2);
  ev->set_score_checkpoint_curve(true);
  task.mutable_spec()->mutable_training()->set_flow_walking_steps(2);
  task.mutable_spec()->mutable_training()->set_solver(lft::v1::SOLVER_EULER);
  EvaluationRunner runner(Options());
  FakeContext ctx;
  auto result = runner.Run(task, &ctx);
  ASSERT_TRUE(result.ok()) << result.status();

  auto text = store_->GetCheckpoint("job1", "report.json");
  ASSERT_TRUE(text.ok()) << text.status();
  const nlohmann::json j = nlohmann::json::parse(*text);
  EXPECT_EQ(j["regression"]["steps"].get<int64_t>(), 40);
  EXPECT_EQ(j["regression_tokens"].get<int64_t>(), 40 * 2 * kSeqLen);
  EXPECT_EQ(j["linear_tokens"].get<int64_t>(), 64);
  std::map<std::string, nlohmann::json> rows;
  for (const auto& r : j["rows"]) rows[r["label"].get<std::string>()] = r;
  ASSERT_EQ(rows.count("linear"), 1u);
  EXPECT_EQ(rows["linear"]["method"], "linear");
  EXPECT_EQ(rows["linear"]["layers_removed"].get<int64_t>(), 2);
  EXPECT_LT(rows["linear"]["nmse"].get<double>(),
            rows["skip-2"]["nmse"].get<double>());
  EXPECT_TRUE(rows["teacher"]["kl_x_softmax"].is_null());
  EXPECT_TRUE(rows["teacher"]["kl_x_lens"].is_null());
  for (const char* label :
       {"skip-1", "skip-2", "regression", "linear", "FW k=3 midpoint"}) {
    EXPECT_GT(rows[label]["kl_x_softmax"].get<double>(), 0.0) << label;
    EXPECT_GT(rows[label]["kl_x_lens"].get<double>(), 0.0) << label;
  }
  ASSERT_EQ(j["curve"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    const nlohmann::json& c = j["curve"][i];
    EXPECT_EQ(c["step"].get<uint64_t>(), 10 * (i + 1));
    EXPECT_EQ(c["tokens"].get<uint64_t>(), 10 * (i + 1) * 8 * kSeqLen);
    EXPECT_EQ(c["k"].get<int64_t>(), 2);
    EXPECT_EQ(c["solver"], "euler");
    for (const char* key : {"nmse", "nmse_k1", "kl_x_softmax"}) {
      EXPECT_GT(c[key].get<double>(), 0.0) << key;
    }
  }
  auto png = store_->GetCheckpoint("job1", "nmse_vs_tokens.png");
  ASSERT_TRUE(png.ok()) << png.status();
  EXPECT_EQ(png->substr(0, 8), "\x89PNG\r\n\x1a\n");
  auto md = store_->GetCheckpoint("job1", "report.md");
  ASSERT_TRUE(md.ok());
  EXPECT_THAT(*md, HasSubstr("Training curve"));
  EXPECT_THAT(*md, HasSubstr("Linear baseline: least-squares affine map "
                             "fitted on 64 tokens"));
}

TEST_F(EvaluationRunnerTest, MissingCheckpointIsNotFoundNamingIt) {
  EvaluationRunner runner(Options());
  FakeContext ctx;
  EXPECT_THAT(runner.Run(MakeTask("ckpt-missing"), &ctx),
              StatusIs(absl::StatusCode::kNotFound, "ckpt-missing"));
}

TEST_F(EvaluationRunnerTest, CheckpointOfAnotherBlockOrTeacherIsRefused) {
  PutCheckpoint("other-block", CheckpointBytes(*model_, 0, 2));
  NeoXConfig narrow = config_;
  narrow.hidden_size = 16;
  auto other = GptNeoX::FromTensors(narrow, GptNeoX::RandomTensors(narrow, 1));
  ASSERT_TRUE(other.ok());
  PutCheckpoint("other-teacher", CheckpointBytes(**other, 1, 3));
  PutCheckpoint("garbage", "not a checkpoint");
  EvaluationRunner runner(Options());
  FakeContext ctx;
  EXPECT_THAT(runner.Run(MakeTask("other-block"), &ctx),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "replaces block [0, 2) but the job's spec replaces "
                       "[1, 3)"));
  EXPECT_THAT(runner.Run(MakeTask("other-teacher"), &ctx),
              StatusIs(absl::StatusCode::kInvalidArgument, "another teacher"));
  auto r = runner.Run(MakeTask("garbage"), &ctx);
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("\"garbage\""));
}

TEST_F(EvaluationRunnerTest, MissingHeldOutFileAndMissingPairs) {
  PutCheckpoint("ckpt", CheckpointBytes(*model_, 1, 3));
  EvaluationRunner runner(Options());
  FakeContext ctx;
  auto task = MakeTask("ckpt");
  task.mutable_spec()->mutable_evaluation()->set_heldout_paths(
      0, (root_ / "nope.jsonl.zst").string());
  EXPECT_THAT(runner.Run(task, &ctx),
              StatusIs(absl::StatusCode::kNotFound, "nope.jsonl.zst"));
  // The regression baseline needs pairs; the job has none.
  EXPECT_THAT(runner.Run(MakeTask("ckpt"), &ctx),
              StatusIs(absl::StatusCode::kFailedPrecondition, "job1"));
  EXPECT_FALSE(store_->GetCheckpoint("job1", "report.json").ok());
}

TEST_F(EvaluationRunnerTest, CancellationStopsTheTask) {
  PutCheckpoint("ckpt", CheckpointBytes(*model_, 1, 3));
  EvaluationRunner runner(Options());
  FakeContext ctx;
  // The first report announces the scoring stage (0 sequences), the second
  // follows the first batch.
  ctx.cancel_after_reports = 2;
  auto task = MakeTask("ckpt");
  task.mutable_spec()->mutable_evaluation()->set_regression_baseline(false);
  EXPECT_THAT(runner.Run(task, &ctx),
              StatusIs(absl::StatusCode::kCancelled, "test cancel"));
  EXPECT_EQ(ctx.last.sequences_done, 2u);  // one batch, then stopped
  EXPECT_FALSE(store_->GetCheckpoint("job1", "report.json").ok());
}

TEST_F(EvaluationRunnerTest, AnalyzeAndExportCommandLines) {
  const std::string teacher = (root_ / "teacher").string();
  const std::string out_json = (root_ / "matrix.json").string();
  const std::string out_png = (root_ / "matrix.png").string();
  EXPECT_EQ(RunCommand(std::string(LFT_ANALYZE_BIN) + " --teacher " + teacher),
            2);
  EXPECT_EQ(RunCommand(std::string(LFT_ANALYZE_BIN) + " --bogus 1"), 2);
  EXPECT_EQ(RunCommand(std::string(LFT_ANALYZE_BIN) + " --teacher " + teacher +
                       " --heldout " + (root_ / "missing.jsonl.zst").string()),
            1);
  ASSERT_EQ(RunCommand(std::string(LFT_ANALYZE_BIN) + " --teacher " + teacher +
                       " --heldout " + heldout_ +
                       " --tokens 40 --seq 16 --out-json " + out_json +
                       " --out-png " + out_png),
            0);
  std::ifstream f(out_json);
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["num_layers"], 4);
  EXPECT_EQ(j["tokens"], 40);
  EXPECT_TRUE(j["ratio"][3][2].is_null());
  EXPECT_GE(j["ratio"][0][4].get<double>(), 0.0);
  EXPECT_TRUE(fs::exists(out_png));

  const std::string ckpt = (root_ / "ckpt.safetensors").string();
  {
    std::ofstream c(ckpt, std::ios::binary);
    c << CheckpointBytes(*model_, 1, 3);
  }
  const std::string out = (root_ / "exported").string();
  EXPECT_EQ(RunCommand(std::string(LFT_EXPORT_BIN) + " --teacher " + teacher +
                       " --checkpoint " + ckpt + " --k 0 --out " + out),
            2);
  ASSERT_EQ(RunCommand(std::string(LFT_EXPORT_BIN) + " --teacher " + teacher +
                       " --checkpoint " + ckpt + " --k 3 --out " + out),
            0);
  auto exported = GptNeoX::Load(out);
  ASSERT_TRUE(exported.ok()) << exported.status();
  EXPECT_EQ((*exported)->config().num_hidden_layers, 4 - 2 + 3);
  EXPECT_TRUE(fs::exists(fs::path(out) / "tokenizer.json"));
  EXPECT_EQ(RunCommand(std::string(LFT_EXPORT_BIN) + " --teacher " + teacher +
                       " --checkpoint " + (root_ / "nope").string() +
                       " --k 3 --out " + out),
            1);
}

}  // namespace
}  // namespace lft
