#include "lftctl/job_spec_yaml.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "common/base/job_spec.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;

constexpr char kYaml[] = R"(# every kind of field
name: pythia-6-12
kind: JOB_KIND_COMPRESS
teacher:
  path: /models/pythia-410m
  computeDtype: bf16          # lowerCamelCase works as in JSON
corpus:
  jsonl_zst_paths:
    - /data/00.jsonl.zst
    - "/data/01.jsonl.zst"
  documents_per_shard: 10000
  error_budget: 18446744073709551615
block: {first_layer: 6, end_layer: 12}
sequence_length: 256
storage_dtype: STORAGE_DTYPE_FP8_E4M3
training:
  method: METHOD_HYBRID
  hybrid_alpha: 1.0e-3
  learning_rate: 0.0003
  solver: SOLVER_EULER
  streaming: true
  trainer_ranks: 2
evaluation:
  steps: [1, 3, 8]
  solvers: [SOLVER_EULER, SOLVER_MIDPOINT]
  regression_baseline: false
  heldout_paths: []
)";

constexpr char kJson[] = R"({
  "name": "pythia-6-12",
  "kind": "JOB_KIND_COMPRESS",
  "teacher": {"path": "/models/pythia-410m", "computeDtype": "bf16"},
  "corpus": {"jsonlZstPaths": ["/data/00.jsonl.zst", "/data/01.jsonl.zst"],
             "documentsPerShard": 10000,
             "errorBudget": "18446744073709551615"},
  "block": {"firstLayer": 6, "endLayer": 12},
  "sequenceLength": 256,
  "storageDtype": "STORAGE_DTYPE_FP8_E4M3",
  "training": {"method": "METHOD_HYBRID", "hybridAlpha": 0.001,
               "learningRate": 0.0003, "solver": "SOLVER_EULER",
               "streaming": true, "trainerRanks": 2},
  "evaluation": {"steps": [1, 3, 8],
                 "solvers": ["SOLVER_EULER", "SOLVER_MIDPOINT"],
                 "regressionBaseline": false}
})";

TEST(JobSpecYamlTest, YamlEqualsItsJsonTwin) {
  auto yaml = ParseJobSpecYaml(kYaml);
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  auto json = ParseJobSpecJson(kJson);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*yaml, *json))
      << yaml->DebugString() << "\nvs\n"
      << json->DebugString();
  // Explicitly false is set (has_), not left unset.
  EXPECT_TRUE(yaml->evaluation().has_regression_baseline());
  EXPECT_EQ(yaml->corpus().error_budget(), 18446744073709551615ull);
}

TEST(JobSpecYamlTest, StringFieldsStayStringsEvenIfTheyLookLikeNumbers) {
  auto spec = ParseJobSpecYaml("name: 123\nteacher: {path: true}\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "123");
  EXPECT_EQ(spec->teacher().path(), "true");
}

TEST(JobSpecYamlTest, MalformedYamlNamesLineAndColumn) {
  EXPECT_THAT(
      ParseJobSpecYaml("name: a\nblock:\n  first_layer: [6, 12\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "job spec is not valid YAML for lft.v1.JobSpec: line 4"));
  EXPECT_THAT(
      ParseJobSpecYaml("name: a\ntraining:\n  max_steps: 3\n   bad: 1\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, "line 4, column "));
  EXPECT_THAT(ParseJobSpecYaml("# nothing\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
  EXPECT_THAT(ParseJobSpecYaml("- a\n- b\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 1, column 1: the spec: expected a map of fields"));
}

TEST(JobSpecYamlTest, UnknownFieldIsRefusedWithItsPath) {
  EXPECT_THAT(
      ParseJobSpecYaml(
          "name: a\ntraining:\n  max_steps: 3\n  learning_rat: 1\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "line 4, column 3: training.learning_rat: unknown field; "
               "TrainingSpec has method, hybrid_alpha"));
  EXPECT_THAT(ParseJobSpecYaml("nmae: a\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 1, column 1: nmae: unknown field"));
}

TEST(JobSpecYamlTest, WrongShapesAndTypesNameTheField) {
  EXPECT_THAT(ParseJobSpecYaml("block:\n  first_layer: six\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 2, column 16: block.first_layer: expected a "
                       "non-negative integer, got \"six\""));
  EXPECT_THAT(ParseJobSpecYaml("block:\n  first_layer: -1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "block.first_layer: expected a non-negative integer"));
  EXPECT_THAT(ParseJobSpecYaml("block:\n  end_layer: 4294967296\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "32-bit"));
  EXPECT_THAT(ParseJobSpecYaml("name: [a, b]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "name: expected a single value, got a list"));
  EXPECT_THAT(ParseJobSpecYaml("evaluation:\n  steps: 3\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "evaluation.steps: expected a list"));
  EXPECT_THAT(ParseJobSpecYaml("evaluation:\n  steps: [1, x]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "evaluation.steps[1]: expected a non-negative integer"));
  EXPECT_THAT(ParseJobSpecYaml("training:\n  streaming: maybe\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "training.streaming: expected true or false"));
  EXPECT_THAT(ParseJobSpecYaml("teacher: /models/x\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "line 1, column 10: teacher: expected a map of fields"));
  EXPECT_THAT(ParseJobSpecYaml("name: a\nname: b\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, "given twice"));
  // Enum names are checked by the one JSON parser.
  EXPECT_THAT(ParseJobSpecYaml("training:\n  method: METHOD_MAGIC\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "job spec is not valid JSON"));
}

TEST(JobSpecYamlTest, FormatChosenByExtensionThenContent) {
  EXPECT_TRUE(IsYamlSpec("a.yaml", "{"));
  EXPECT_TRUE(IsYamlSpec("A.YML", "{"));
  EXPECT_FALSE(IsYamlSpec("a.json", "name: x"));
  EXPECT_FALSE(IsYamlSpec("spec", "  \n{\"name\": \"x\"}"));
  EXPECT_TRUE(IsYamlSpec("spec", "name: x\n"));
  auto a =
      ParseJobSpecFileContent("/tmp/spec", "name: x\nsequence_length: 7\n");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = ParseJobSpecFileContent("/tmp/spec",
                                   R"({"sequenceLength": 7, "name": "x"})");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(MessageDifferencer::Equals(*a, *b));
}

TEST(JobSpecYamlTest, ExampleSpecParsesAndValidates) {
  const char* root = std::getenv("LFT_TEST_SRCDIR");
  ASSERT_NE(root, nullptr) << "LFT_TEST_SRCDIR is set by ctest";
  const std::string path =
      std::string(root) + "/deploy/examples/compress-default.yaml";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream buf;
  buf << in.rdbuf();
  auto spec = ParseJobSpecFileContent(path, buf.str());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name(), "pythia-410m-6-12");
  EXPECT_EQ(spec->block().first_layer(), 6u);
  EXPECT_EQ(spec->training().method(), lft::v1::METHOD_FW);
  ApplyJobSpecDefaults(&*spec);
  EXPECT_TRUE(ValidateJobSpec(*spec, TeacherShape{24, 2048}).empty())
      << SpecProblemsToStatus(ValidateJobSpec(*spec, TeacherShape{24, 2048}));
}

}  // namespace
}  // namespace lft
