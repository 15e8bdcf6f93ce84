// Torch-free parts of the evaluator: the report's JSON round trip, Markdown
// table and verdict sentence, its PNG plots, and held-out packing.
#include "worker/evaluator/evaluation_report.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/corpus/jsonl_zst.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/bpe_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "worker/evaluator/heldout.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;
using ::testing::HasSubstr;

EvaluationRow Row(const std::string& method, int64_t removed, double kl,
                  double ppl, const std::string& solver = "", int64_t k = 0) {
  EvaluationRow r;
  r.method = method;
  r.solver = solver;
  r.layers_removed = removed;
  r.k = k;
  r.nfe = solver == "midpoint" ? 2 * k : k;
  if (method == "skip") r.skip = removed;
  if (method == "regression") r.nfe = 1;
  r.kl_x = kl / 2;
  r.nmse = kl / 4;
  r.kl_pq = kl;
  r.ppl = ppl;
  if (method != "teacher") {
    r.kl_x_softmax = kl / 8;
    r.kl_x_lens = kl / 3;
  }
  return r;
}

EvaluationReport Sample() {
  EvaluationReport r;
  r.job = "job1";
  r.checkpoint = "ckpt-10";
  r.teacher = "/teachers/tiny";
  r.num_layers = 24;
  r.first_layer = 6;
  r.end_layer = 12;
  r.method = "fw";
  r.checkpoint_step = 10;
  r.checkpoint_tokens = 20480;
  r.losses = {3.0, 2.0, 1.5, 1.2};
  r.heldout_files = {"/data/val.jsonl.zst"};
  r.sequence_length = 128;
  r.heldout_sequences = 4;
  r.heldout_tokens = 500;
  r.predicted_tokens = 496;
  r.teacher_ppl = 9.02;
  r.recoupling_ratio = 0.1;
  r.recoupling_tokens = 256;
  r.rows = {Row("teacher", 0, 0, 9.02),
            Row("skip", 1, 0.257, 11.43),
            Row("skip", 5, 0.9, 30.0),
            Row("regression", 5, 0.305, 12.45),
            Row("fw", 5, 0.300, 12.42, "midpoint", 1),
            Row("fw", 5, 0.254, 11.86, "midpoint", 3),
            Row("fw", 5, 0.27, 12.0, "euler", 3)};
  return r;
}

TEST(EvaluationReportTest, JsonRoundTripKeepsEveryField) {
  const EvaluationReport r = Sample();
  auto back = ParseEvaluationReport(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  ASSERT_EQ(back->rows.size(), r.rows.size());
  EXPECT_EQ(back->rows[5].Label(), "FW k=3 midpoint");
  EXPECT_EQ(back->rows[5].nfe, 6);
  EXPECT_EQ(back->losses, r.losses);
}

TEST(EvaluationReportTest, StudyFieldsRoundTripUnderTheirJsonNames) {
  EvaluationReport r = Sample();
  r.regression_tokens = 40960;
  r.linear_tokens = 262144;
  EvaluationRow lin = Row("linear", 6, 0.6, 20.0);
  lin.nfe = 0;
  r.rows.insert(r.rows.begin() + 4, lin);
  CurvePoint a;
  a.checkpoint = "step-0000000200";
  a.step = 200;
  a.tokens = 409600;
  a.k = 3;
  a.solver = "midpoint";
  a.nmse = 0.05;
  a.nmse_k1 = 0.08;
  a.kl_x_softmax = 0.01;
  CurvePoint b = a;
  b.checkpoint = "step-0000000400";
  b.step = 400;
  b.tokens = 819200;
  b.nmse = 0.02;
  r.curve = {a, b};
  const nlohmann::json j = nlohmann::json::parse(r.ToJson());
  EXPECT_EQ(j["regression_tokens"], 40960);
  EXPECT_EQ(j["linear_tokens"], 262144);
  EXPECT_TRUE(j["rows"][0]["kl_x_softmax"].is_null());  // the teacher
  EXPECT_TRUE(j["rows"][0]["kl_x_lens"].is_null());
  EXPECT_DOUBLE_EQ(j["rows"][1]["kl_x_softmax"].get<double>(), 0.257 / 8);
  EXPECT_DOUBLE_EQ(j["rows"][1]["kl_x_lens"].get<double>(), 0.257 / 3);
  EXPECT_EQ(j["rows"][4]["method"], "linear");
  ASSERT_EQ(j["curve"].size(), 2u);
  EXPECT_EQ(j["curve"][1]["step"], 400);
  EXPECT_EQ(j["curve"][1]["tokens"], 819200);
  EXPECT_EQ(j["curve"][1]["solver"], "midpoint");
  EXPECT_DOUBLE_EQ(j["curve"][1]["nmse"].get<double>(), 0.02);
  EXPECT_DOUBLE_EQ(j["curve"][1]["nmse_k1"].get<double>(), 0.08);
  EXPECT_DOUBLE_EQ(j["curve"][1]["kl_x_softmax"].get<double>(), 0.01);
  auto back = ParseEvaluationReport(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  EXPECT_TRUE(std::isnan(back->rows[0].kl_x_softmax));
  EXPECT_EQ(back->curve.size(), 2u);
  EXPECT_EQ(back->regression_tokens, 40960);
  const std::string md = r.ToMarkdown();
  EXPECT_THAT(md, HasSubstr("| linear | 6 | - | - |"));
  EXPECT_THAT(md, HasSubstr("| step-0000000400 | 400 | 819200 | 3 | midpoint "
                            "| 0.0200 | 0.0800 | 0.0100 |"));
  auto png = RenderCurvePlot(r);
  ASSERT_TRUE(png.ok()) << png.status();
  EXPECT_EQ(png->substr(0, 8), "\x89PNG\r\n\x1a\n");
  if (const char* dir = std::getenv("LFT_TEST_PLOT_DIR")) {
    std::ofstream(std::string(dir) + "/nmse_vs_tokens.png", std::ios::binary)
        << *png;
  }
  r.curve.clear();
  EXPECT_THAT(
      RenderCurvePlot(r),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no training curve"));
}

// A report.json written before kl_x_softmax, kl_x_lens, regression_tokens
// and curve existed still parses; the local measures are absent ("-").
TEST(EvaluationReportTest, ReportOfAnEarlierVersionParsesWithoutNewFields) {
  nlohmann::json j = nlohmann::json::parse(Sample().ToJson());
  j.erase("regression_tokens");
  j.erase("linear_tokens");
  j.erase("curve");
  for (auto& row : j["rows"]) {
    row.erase("kl_x_softmax");
    row.erase("kl_x_lens");
  }
  auto old = ParseEvaluationReport(j.dump());
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->regression_tokens, 0);
  EXPECT_TRUE(old->curve.empty());
  ASSERT_EQ(old->rows.size(), 7u);
  EXPECT_TRUE(std::isnan(old->rows[2].kl_x_softmax));
  EXPECT_TRUE(std::isnan(old->rows[2].kl_x_lens));
  EXPECT_DOUBLE_EQ(old->rows[2].kl_pq, 0.9);
  EXPECT_THAT(old->ToMarkdown(),
              HasSubstr("| skip-5 | 5 | - | - | 0.4500 | - | - | 0.2250 | "
                        "0.9000 | 30.000 |"));
}

TEST(EvaluationReportTest, ParseRejectsOtherJson) {
  EXPECT_THAT(ParseEvaluationReport("[1, 2]"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not a JSON"));
  EXPECT_THAT(ParseEvaluationReport(R"({"format": "x"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "format"));
  EXPECT_THAT(
      ParseEvaluationReport(R"({"format": "lft-eval-report-1", "job": "j"})"),
      StatusIs(absl::StatusCode::kInvalidArgument, "checkpoint"));
}

TEST(EvaluationReportTest, MarkdownHasTable1LayoutAndVerdict) {
  const std::string md = Sample().ToMarkdown();
  EXPECT_THAT(md, HasSubstr("| method | layers removed | k | NFE | KL_x | "
                            "KL_x softmax | KL_x lens | NMSE | KL_PQ | PPL |"));
  EXPECT_THAT(md,
              HasSubstr("| teacher | 0 | - | - | - | - | - | - | - | 9.020 |"));
  EXPECT_THAT(md, HasSubstr("| skip-5 | 5 | - | - | 0.4500 | 0.1125 | 0.3000 "
                            "| 0.2250 | 0.9000 | 30.000 |"));
  EXPECT_THAT(md, HasSubstr("| FW k=3 midpoint | 5 | 3 | 6 |"));
  EXPECT_THAT(md, HasSubstr("At its best setting (k=3, midpoint, 6 NFE) the FW "
                            "flow layer beats skip-5 (5 layers removed by "
                            "each) on both KL_PQ (0.2540 vs 0.9000) and PPL "
                            "(11.860 vs 30.000)."));
}

TEST(EvaluationReportTest, VerdictSaysWhichMetricLoses) {
  EvaluationReport r = Sample();
  r.rows[2].ppl = 11.0;  // skip-5 now has the lower perplexity
  EXPECT_THAT(r.Verdict(), HasSubstr("beats skip-5 (5 layers removed by each) "
                                     "on KL_PQ (0.2540 vs 0.9000) but not on "
                                     "PPL (11.860 vs 11.000)"));
  r.rows[2].kl_pq = 0.1;
  EXPECT_THAT(r.Verdict(), HasSubstr("does not beat skip-5"));
  r.rows.erase(r.rows.begin() + 2);
  EXPECT_THAT(r.Verdict(), HasSubstr("No comparison"));
  // A one-layer block removes nothing: compared with the teacher.
  EvaluationReport one = Sample();
  one.end_layer = 7;
  EXPECT_THAT(one.Verdict(), HasSubstr("does not beat the teacher"));
}

TEST(EvaluationReportTest, PlotsArePngsAndNeedData) {
  EvaluationReport r = Sample();
  auto loss = RenderLossPlot(r);
  ASSERT_TRUE(loss.ok()) << loss.status();
  EXPECT_EQ(loss->substr(0, 8), "\x89PNG\r\n\x1a\n");
  auto kl = RenderKlPlot(r);
  ASSERT_TRUE(kl.ok()) << kl.status();
  EXPECT_EQ(kl->substr(0, 8), "\x89PNG\r\n\x1a\n");
  // LFT_TEST_PLOT_DIR=DIR keeps the plot, to look at it.
  if (const char* dir = std::getenv("LFT_TEST_PLOT_DIR")) {
    std::ofstream(std::string(dir) + "/kl_vs_k.png", std::ios::binary) << *kl;
  }
  r.losses.clear();
  EXPECT_THAT(RenderLossPlot(r),
              StatusIs(absl::StatusCode::kFailedPrecondition, "ckpt-10"));
  r.rows.resize(4);  // no flow rows
  EXPECT_THAT(RenderKlPlot(r),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no flow rows"));
}

class HeldOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("lft_heldout_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    BpeTrainerOptions to;
    to.vocab_size = 300;
    BpeTrainer trainer(to);
    trainer.AddText("the quick brown fox jumps over the lazy dog");
    auto json = trainer.TrainToJson();
    ASSERT_TRUE(json.ok()) << json.status();
    auto tok = BpeTokenizer::FromJson(*json);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tokenizer_ = std::move(*tok);
    file_ = (dir_ / "val.jsonl.zst").string();
    auto w = JsonlZstWriter::Open(file_);
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE((*w)->Write("the quick brown fox", "Synthetic").ok());
    }
    ASSERT_TRUE((*w)->Close().ok());
    doc_tokens_ =
        static_cast<int64_t>(tokenizer_->Encode("the quick brown fox").size()) +
        1;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path dir_;
  std::string file_;
  std::unique_ptr<BpeTokenizer> tokenizer_;
  int64_t doc_tokens_ = 0;
};

TEST_F(HeldOutTest, PacksDocumentsAndPadsTheLastSequence) {
  HeldOutOptions o;
  o.sequence_length = 4;
  o.max_sequences = 100;
  o.eos_id = 0;
  o.pad_id = 7;
  auto h = ReadHeldOut({file_}, tokenizer_.get(), o);
  ASSERT_TRUE(h.ok()) << h.status();
  const int64_t total = 3 * doc_tokens_;
  EXPECT_EQ(static_cast<int64_t>(h->sequences.size()), (total + 3) / 4);
  EXPECT_EQ(h->valid_tokens(), total);
  EXPECT_EQ(h->documents, 3);
  if (total % 4 != 0) {
    const PackedSequence& last = h->sequences.back();
    EXPECT_EQ(last.mask.back(), 0);
    EXPECT_EQ(last.tokens.back(), 7);
  }
  o.max_sequences = 2;
  h = ReadHeldOut({file_}, tokenizer_.get(), o);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->sequences.size(), 2u);
  EXPECT_EQ(h->valid_tokens(), 8);
}

TEST_F(HeldOutTest, ErrorsNameTheFile) {
  HeldOutOptions o;
  o.sequence_length = 4;
  const std::string missing = (dir_ / "missing.jsonl.zst").string();
  EXPECT_THAT(ReadHeldOut({missing}, tokenizer_.get(), o),
              StatusIs(absl::StatusCode::kNotFound, "missing.jsonl.zst"));
  EXPECT_THAT(ReadHeldOut({}, tokenizer_.get(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, "no held-out"));
  EXPECT_THAT(ReadHeldOut({file_}, tokenizer_.get(), o, [] { return true; }),
              StatusIs(absl::StatusCode::kCancelled, "val.jsonl.zst"));
}

}  // namespace
}  // namespace lft
