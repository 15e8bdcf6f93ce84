#include "common/base/job_spec.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;
using ::testing::Contains;
using ::testing::Field;
using ::testing::IsEmpty;
using ::testing::SizeIs;

lft::v1::JobSpec MinimalSpec() {
  lft::v1::JobSpec spec;
  spec.set_name("pythia-6-12");
  spec.mutable_teacher()->set_path("/models/pythia-410m");
  spec.mutable_corpus()->add_jsonl_zst_paths("/data/pile/00.jsonl.zst");
  spec.mutable_block()->set_first_layer(6);
  spec.mutable_block()->set_end_layer(12);
  spec.mutable_evaluation()->add_heldout_paths("/data/pile/val.jsonl.zst");
  return spec;
}

auto HasProblem(const std::string& field, const std::string& substring) {
  return Contains(::testing::AllOf(
      Field(&SpecProblem::field, field),
      Field(&SpecProblem::message, ::testing::HasSubstr(substring))));
}

TEST(JobSpecTest, DefaultedMinimalSpecIsValid) {
  lft::v1::JobSpec spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  EXPECT_THAT(ValidateJobSpec(spec, TeacherShape{24, 2048}), IsEmpty());
  EXPECT_EQ(spec.kind(), lft::v1::JOB_KIND_COMPRESS);
  EXPECT_EQ(spec.training().method(), lft::v1::METHOD_FW);
  EXPECT_EQ(spec.training().flow_walking_steps(), 3u);
  EXPECT_EQ(spec.training().solver(), lft::v1::SOLVER_MIDPOINT);
  EXPECT_EQ(spec.training().estimator_init(),
            lft::v1::ESTIMATOR_INIT_TEACHER_LAYER);
  EXPECT_THAT(spec.evaluation().steps(), ::testing::ElementsAre(1, 3, 8));
  EXPECT_TRUE(spec.evaluation().regression_baseline());
}

TEST(JobSpecTest, DefaultsNeverOverrideWhatTheUserSet) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_method(lft::v1::METHOD_HYBRID);
  spec.mutable_training()->set_hybrid_alpha(0.5);
  spec.mutable_training()->set_learning_rate(1e-3);
  spec.mutable_evaluation()->add_steps(5);
  spec.mutable_evaluation()->set_regression_baseline(false);
  ApplyJobSpecDefaults(&spec);
  EXPECT_EQ(spec.training().hybrid_alpha(), 0.5);
  EXPECT_EQ(spec.training().learning_rate(), 1e-3);
  EXPECT_THAT(spec.evaluation().steps(), ::testing::ElementsAre(5));
  EXPECT_FALSE(spec.evaluation().regression_baseline());
}

TEST(JobSpecTest, StreamingGetsABufferAndAnyNumberOfRanks) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_streaming(true);
  spec.mutable_training()->set_global_batch_sequences(8);
  ApplyJobSpecDefaults(&spec);
  EXPECT_EQ(spec.training().streaming_buffer_pairs(), 32u);
  EXPECT_THAT(ValidateJobSpec(spec, TeacherShape{24, 2048}), IsEmpty());
  // Several ranks stream too (each step's global batch does not depend on
  // the world size).
  spec.mutable_training()->set_trainer_ranks(2);
  EXPECT_THAT(ValidateJobSpec(spec, TeacherShape{24, 2048}), IsEmpty());
  spec.mutable_training()->set_streaming_buffer_pairs(4);
  auto problems = ValidateJobSpec(spec, TeacherShape{24, 2048});
  EXPECT_THAT(problems, HasProblem("training.streaming_buffer_pairs",
                                   "smaller than one global batch of 8"));
  EXPECT_EQ(problems.size(), 1u);
}

TEST(JobSpecTest, HybridGetsThePapersAlphaByDefault) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.mutable_training()->set_method(lft::v1::METHOD_HYBRID);
  ApplyJobSpecDefaults(&spec);
  EXPECT_DOUBLE_EQ(spec.training().hybrid_alpha(), 0.001);
}

TEST(JobSpecTest, BlockOutsideTheTeacherIsReportedInTheUsersTerms) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.mutable_block()->set_first_layer(20);
  spec.mutable_block()->set_end_layer(30);
  ApplyJobSpecDefaults(&spec);
  auto problems = ValidateJobSpec(spec, TeacherShape{24, 2048});
  EXPECT_THAT(
      problems,
      HasProblem("block", "block [20, 30) is outside the teacher's 24 layers"));
  // Without the teacher's shape the same block is accepted.
  EXPECT_THAT(ValidateJobSpec(spec), IsEmpty());
}

TEST(JobSpecTest, ReportsEveryProblemWithItsFieldPath) {
  lft::v1::JobSpec spec;
  spec.set_name("Bad Name!");
  spec.set_kind(lft::v1::JOB_KIND_COMPRESS);
  spec.mutable_teacher()->set_compute_dtype("float8");
  spec.mutable_block()->set_first_layer(6);
  spec.mutable_block()->set_end_layer(6);
  spec.set_sequence_length(1);
  auto* t = spec.mutable_training();
  t->set_method(lft::v1::METHOD_HYBRID);
  t->set_hybrid_alpha(-1);
  t->set_flow_walking_steps(100);
  t->set_learning_rate(2.0);
  t->set_weight_decay(-0.1);
  t->set_global_batch_sequences(10);
  t->set_trainer_ranks(3);
  t->set_max_steps(10);
  t->set_warmup_steps(20);
  spec.mutable_evaluation()->add_steps(0);
  spec.mutable_evaluation()->add_steps(3);
  spec.mutable_evaluation()->add_solvers(lft::v1::SOLVER_UNSPECIFIED);

  auto problems = ValidateJobSpec(spec);
  EXPECT_THAT(problems, HasProblem("name", "Bad Name!"));
  EXPECT_THAT(problems, HasProblem("teacher.path", "HF directory"));
  EXPECT_THAT(problems, HasProblem("teacher.compute_dtype", "float8"));
  EXPECT_THAT(problems,
              HasProblem("corpus", "jsonl_zst_paths or megatron_prefixes"));
  EXPECT_THAT(problems, HasProblem("block", "is empty"));
  EXPECT_THAT(problems, HasProblem("storage_dtype", "set"));
  EXPECT_THAT(problems, HasProblem("training.hybrid_alpha", "positive"));
  EXPECT_THAT(problems, HasProblem("training.flow_walking_steps", "got 100"));
  EXPECT_THAT(problems, HasProblem("training.solver", "euler or midpoint"));
  EXPECT_THAT(problems, HasProblem("training.learning_rate", "(0, 1), got 2"));
  EXPECT_THAT(problems, HasProblem("training.weight_decay", ">= 0"));
  EXPECT_THAT(problems,
              HasProblem("training.global_batch_sequences",
                         "does not divide evenly over 3 trainer ranks"));
  EXPECT_THAT(problems, HasProblem("training.warmup_steps",
                                   "longer than the budget of 10"));
  EXPECT_THAT(problems,
              HasProblem("training.checkpoint_every_steps", "at least 1"));
  EXPECT_THAT(problems, HasProblem("evaluation.steps[0]", "got 0"));
  EXPECT_THAT(problems,
              HasProblem("evaluation.solvers[0]", "euler or midpoint"));
  EXPECT_THAT(problems, HasProblem("sequence_length", "got 1"));
  EXPECT_THAT(problems,
              HasProblem("evaluation.heldout_paths", "at least one held-out"));
  EXPECT_THAT(problems, SizeIs(18));

  absl::Status status = SpecProblemsToStatus(problems);
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               "invalid job spec (18 problems)"));
  EXPECT_THAT(status,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\n  training.learning_rate: must be in (0, 1), got 2"));
  EXPECT_THAT(SpecProblemsToStatus({}), IsOk());
}

TEST(JobSpecTest, SequenceLongerThanTheTeachersPositionsIsRejected) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.set_sequence_length(4096);
  ApplyJobSpecDefaults(&spec);
  EXPECT_THAT(ValidateJobSpec(spec, TeacherShape{24, 2048}),
              HasProblem("sequence_length",
                         "4096 exceeds the teacher's 2048 positions"));
}

TEST(JobSpecTest, CorpusMustNameExactlyOneFormat) {
  lft::v1::JobSpec spec = MinimalSpec();
  spec.mutable_corpus()->add_megatron_prefixes("/data/pile_text_document");
  spec.mutable_corpus()->add_jsonl_zst_paths("");
  ApplyJobSpecDefaults(&spec);
  auto problems = ValidateJobSpec(spec);
  EXPECT_THAT(problems, HasProblem("corpus", "not both"));
  EXPECT_THAT(problems, HasProblem("corpus.jsonl_zst_paths[1]", "is empty"));
}

TEST(JobSpecTest, ParsesJsonWithEnumNamesAndBothFieldSpellings) {
  auto spec = ParseJobSpecJson(R"({
    "name": "j", "kind": "JOB_KIND_COMPRESS",
    "teacher": {"path": "/t"}, "corpus": {"jsonl_zst_paths": ["/c.jsonl.zst"]},
    "block": {"firstLayer": 2, "end_layer": 5},
    "training": {"method": "METHOD_SFM", "learningRate": 0.001}
  })");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->block().first_layer(), 2u);
  EXPECT_EQ(spec->block().end_layer(), 5u);
  EXPECT_EQ(spec->training().method(), lft::v1::METHOD_SFM);
  EXPECT_DOUBLE_EQ(spec->training().learning_rate(), 0.001);
}

TEST(JobSpecTest, MalformedJsonIsInvalidArgument) {
  EXPECT_THAT(ParseJobSpecJson("{\"name\": "),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not valid JSON for lft.v1.JobSpec"));
  // A number beyond double's range is nlohmann's out_of_range, not a
  // parse_error (found by job_spec_json_fuzzer).
  EXPECT_THAT(ParseJobSpecJson(std::string(400, '5')),
              StatusIs(absl::StatusCode::kInvalidArgument, "number overflow"));
  EXPECT_THAT(ParseJobSpecJson(R"({"training": {"max_steps": 1e999}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not valid JSON for lft.v1.JobSpec"));
  EXPECT_THAT(ParseJobSpecJson(R"({"nmae": "typo"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "nmae"));
  EXPECT_THAT(ParseJobSpecJson(R"({"training": {"method": "METHOD_NOPE"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "METHOD_NOPE"));
}

// Proto3 keeps unknown enum values; over a raw RPC solver 42 and init 42
// were accepted and even ran.
TEST(JobSpecTest, EnumValuesOutOfRangeAreRefused) {
  lft::v1::JobSpec spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  spec.mutable_training()->set_solver(static_cast<lft::v1::Solver>(42));
  spec.mutable_training()->set_estimator_init(
      static_cast<lft::v1::EstimatorInit>(42));
  spec.mutable_training()->set_method(static_cast<lft::v1::Method>(42));
  spec.set_storage_dtype(static_cast<lft::v1::StorageDtype>(42));
  spec.mutable_evaluation()->set_solvers(0, static_cast<lft::v1::Solver>(42));
  auto problems = ValidateJobSpec(spec);
  EXPECT_THAT(
      problems,
      HasProblem("training.solver",
                 "42 is not a known value of lft.v1.Solver; set euler"));
  EXPECT_THAT(problems, HasProblem("training.estimator_init",
                                   "42 is not a known value of "
                                   "lft.v1.EstimatorInit; set teacher_layer"));
  EXPECT_THAT(problems, HasProblem("training.method",
                                   "42 is not a known value of lft.v1.Method"));
  EXPECT_THAT(problems,
              HasProblem("storage_dtype",
                         "42 is not a known value of lft.v1.StorageDtype"));
  EXPECT_THAT(problems, HasProblem("evaluation.solvers[0]",
                                   "42 is not a known value of lft.v1.Solver"));
  spec = MinimalSpec();
  spec.set_kind(static_cast<lft::v1::JobKind>(42));
  EXPECT_THAT(ValidateJobSpec(spec),
              HasProblem("kind", "42 is not a known value of lft.v1.JobKind"));
}

// global_batch_sequences 4294967295 passed and every trainer aborted with
// std::bad_alloc.
TEST(JobSpecTest, SizeFieldsAreBoundedByTheStatedLimits) {
  lft::v1::JobSpec spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  spec.mutable_training()->set_global_batch_sequences(4294967295u);
  EXPECT_THAT(ValidateJobSpec(spec),
              HasProblem("training.global_batch_sequences",
                         "must be at most 65536, got 4294967295"));

  spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  spec.set_sequence_length(2048);
  spec.mutable_training()->set_global_batch_sequences(1024);
  EXPECT_THAT(ValidateJobSpec(spec),
              HasProblem("training.global_batch_sequences",
                         "1024 sequences per rank x 2048 tokens = 2097152 "
                         "tokens per rank and step, more than the limit of "
                         "1048576"));
  spec.mutable_training()->set_trainer_ranks(2);
  EXPECT_THAT(ValidateJobSpec(spec), IsEmpty());

  spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  spec.mutable_training()->set_max_steps(kMaxTrainingSteps + 1);
  spec.mutable_training()->set_warmup_steps(10);
  spec.mutable_training()->set_streaming_buffer_pairs(uint64_t{1} << 40);
  spec.mutable_evaluation()->set_max_sequences(1u << 20);
  spec.set_teacher_workers(100000);
  auto problems = ValidateJobSpec(spec);
  EXPECT_THAT(problems, HasProblem("training.max_steps",
                                   "must be at most 100000000, got"));
  EXPECT_THAT(problems, HasProblem("training.streaming_buffer_pairs",
                                   "must be at most 16777216"));
  EXPECT_THAT(problems,
              HasProblem("evaluation.max_sequences", "must be at most 65536"));
  EXPECT_THAT(problems, HasProblem("teacher_workers",
                                   "must be at most 4096, got 100000"));

  spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  spec.mutable_training()->set_max_steps(0);
  spec.mutable_training()->set_max_tokens(uint64_t{1} << 62);
  EXPECT_THAT(ValidateJobSpec(spec),
              HasProblem("training.max_tokens",
                         "more than the limit of 100000000 steps"));
}

// The fidelity study's evaluation fields: the linear baseline gets its
// token budget only when it is on, the regression's steps and batch stay
// 0 (the runner's defaults), and each is bounded with its field path.
TEST(JobSpecTest, StudyEvaluationFieldsAreDefaultedAndBounded) {
  lft::v1::JobSpec spec = MinimalSpec();
  ApplyJobSpecDefaults(&spec);
  EXPECT_FALSE(spec.evaluation().linear_baseline());
  EXPECT_EQ(spec.evaluation().linear_tokens(), 0u);
  EXPECT_EQ(spec.evaluation().regression_steps(), 0u);
  EXPECT_EQ(spec.evaluation().regression_batch_sequences(), 0u);
  EXPECT_FALSE(spec.evaluation().score_checkpoint_curve());

  spec = MinimalSpec();
  spec.mutable_evaluation()->set_linear_baseline(true);
  ApplyJobSpecDefaults(&spec);
  EXPECT_EQ(spec.evaluation().linear_tokens(), kDefaultLinearTokens);
  spec.mutable_evaluation()->set_linear_tokens(1000);
  ApplyJobSpecDefaults(&spec);
  EXPECT_EQ(spec.evaluation().linear_tokens(), 1000u);
  // The study's grid of scored k and solvers is accepted.
  spec.mutable_evaluation()->clear_steps();
  for (uint32_t k : {1u, 2u, 3u, 4u, 8u})
    spec.mutable_evaluation()->add_steps(k);
  spec.mutable_evaluation()->set_regression_steps(5000);
  spec.mutable_evaluation()->set_regression_batch_sequences(32);
  spec.mutable_evaluation()->set_score_checkpoint_curve(true);
  EXPECT_THAT(ValidateJobSpec(spec, TeacherShape{24, 2048}), IsEmpty());

  spec.mutable_evaluation()->set_linear_tokens(kMaxLinearTokens + 1);
  spec.mutable_evaluation()->set_regression_steps(kMaxRegressionSteps + 1);
  spec.mutable_evaluation()->set_regression_batch_sequences(65537);
  auto problems = ValidateJobSpec(spec);
  EXPECT_THAT(problems, HasProblem("evaluation.linear_tokens",
                                   "must be at most 67108864, got 67108865"));
  EXPECT_THAT(problems, HasProblem("evaluation.regression_steps",
                                   "must be at most 1000000, got 1000001"));
  EXPECT_THAT(problems, HasProblem("evaluation.regression_batch_sequences",
                                   "must be at most 65536, got 65537"));
  spec.mutable_evaluation()->set_regression_batch_sequences(1024);
  spec.set_sequence_length(2048);
  EXPECT_THAT(ValidateJobSpec(spec),
              HasProblem("evaluation.regression_batch_sequences",
                         "1024 sequences x 2048 tokens = 2097152 tokens per "
                         "step, more than the limit of 1048576"));
}

TEST(JobSpecTest, StudyEvaluationFieldsParseFromJson) {
  auto spec = ParseJobSpecJson(R"({"evaluation": {
      "linear_baseline": true, "linearTokens": 4096,
      "regression_steps": 700, "regression_batch_sequences": 8,
      "score_checkpoint_curve": true}})");
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_TRUE(spec->evaluation().linear_baseline());
  EXPECT_EQ(spec->evaluation().linear_tokens(), 4096u);
  EXPECT_EQ(spec->evaluation().regression_steps(), 700u);
  EXPECT_EQ(spec->evaluation().regression_batch_sequences(), 8u);
  EXPECT_TRUE(spec->evaluation().score_checkpoint_curve());
}

// "yes" was taken as true: protobuf's JSON parser accepts strings for bools.
TEST(JobSpecTest, JsonBoolsAreOnlyTrueOrFalse) {
  EXPECT_THAT(
      ParseJobSpecJson(R"({"evaluation": {"regressionBaseline": "yes"}})"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "evaluation.regressionBaseline: expected true or false, got "
               "\"yes\""));
  EXPECT_THAT(ParseJobSpecJson(R"({"training": {"streaming": 1}})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "training.streaming: expected true or false, got 1"));
  auto ok = ParseJobSpecJson(R"({"training": {"streaming": true}})");
  ASSERT_THAT(ok, IsOk());
  EXPECT_TRUE(ok->training().streaming());
}

TEST(JobSpecTest, JsonSyntaxErrorsNameTheLineAndColumn) {
  EXPECT_THAT(ParseJobSpecJson("{\n  \"name\": \"j\",\n  \"kind\" 3\n}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not valid JSON for lft.v1.JobSpec: line 3, column 10"));
  EXPECT_THAT(ParseJobSpecJson("{\"name\": "),
              StatusIs(absl::StatusCode::kInvalidArgument, "line 1, column"));
}

}  // namespace
}  // namespace lft
