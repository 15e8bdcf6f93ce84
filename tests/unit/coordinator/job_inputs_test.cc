#include "coordinator/job_inputs.h"

#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/teacher_config.h"
#include "common/tensor/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

}  // namespace

// Readable failures: gtest would print the bytes otherwise.
void PrintTo(const SpecProblem& p, std::ostream* os) {
  *os << p.field << ": " << p.message;
}

namespace {

auto HasProblem(const std::string& field, const std::string& substring) {
  return Contains(AllOf(Field(&SpecProblem::field, field),
                        Field(&SpecProblem::message, HasSubstr(substring))));
}

// A GPT-NeoX of 2 layers x 8, enough for the shape checks.
constexpr char kConfig[] = R"({"vocab_size": 16, "hidden_size": 8,
  "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
  "max_position_embeddings": 64, "rotary_pct": 0.5, "hidden_act": "gelu"})";

std::string Zstd() { return std::string("\x28\xB5\x2F\xFD\0\0", 6); }

class JobInputsTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }
  void Write(const std::string& name, const std::string& bytes) {
    std::ofstream(Path(name), std::ios::binary) << bytes;
  }

  // A teacher directory whose weights match kConfig, except that
  // `wrong_shape` gets [1] and `missing` is left out.
  std::string MakeTeacher(const std::string& wrong_shape = "",
                          const std::string& missing = "") {
    const std::string dir = Path("teacher");
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/config.json") << kConfig;
    std::ofstream(dir + "/tokenizer.json") << R"({"model": {}})";
    auto config = ParseNeoXConfig(kConfig);
    EXPECT_TRUE(config.ok()) << config.status();
    SafetensorsWriter w;
    for (NeoXTensorShape t : NeoXTensorShapes(*config)) {
      if (t.name == missing) continue;
      if (t.name == wrong_shape) t.shape = {1};
      int64_t n = 1;
      for (int64_t d : t.shape) n *= d;
      std::vector<uint8_t> zeros(static_cast<size_t>(n) * 4, 0);
      EXPECT_TRUE(w.Add(t.name, DType::kF32, t.shape, zeros).ok());
    }
    EXPECT_TRUE(w.WriteFile(dir + "/model.safetensors").ok());
    return dir;
  }

  lft::v1::JobSpec Spec(const std::string& teacher) {
    lft::v1::JobSpec spec = ValidSpec(teacher);
    spec.mutable_corpus()->clear_jsonl_zst_paths();
    Write("a.jsonl.zst", Zstd());
    spec.mutable_corpus()->add_jsonl_zst_paths(Path("a.jsonl.zst"));
    spec.mutable_evaluation()->clear_heldout_paths();
    spec.mutable_evaluation()->add_heldout_paths(Path("a.jsonl.zst"));
    return spec;
  }

  TempDir dir_;
};

TEST_F(JobInputsTest, AGoodTeacherAndCorpusHaveNoProblems) {
  lft::v1::JobSpec spec = Spec(MakeTeacher());
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, IsEmpty());
  ASSERT_TRUE(in.teacher.has_value());
  EXPECT_EQ(in.teacher->num_hidden_layers, 2);
  EXPECT_EQ(in.teacher->hidden_size, 8);
}

// A missing teacher or corpus was accepted; the job failed 0.2 s later.
TEST_F(JobInputsTest, MissingTeacherCorpusAndHeldoutAreAllReported) {
  lft::v1::JobSpec spec = ValidSpec(Path("no-teacher"));
  spec.mutable_corpus()->clear_jsonl_zst_paths();
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("none.jsonl.zst"));
  spec.mutable_evaluation()->clear_heldout_paths();
  spec.mutable_evaluation()->add_heldout_paths(Path("val.jsonl.zst"));
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("teacher.path", "is not a directory"));
  EXPECT_THAT(in.problems,
              HasProblem("corpus.jsonl_zst_paths[0]",
                         Path("none.jsonl.zst") + " does not exist"));
  EXPECT_THAT(in.problems,
              HasProblem("evaluation.heldout_paths[0]",
                         Path("val.jsonl.zst") + " does not exist"));
  EXPECT_THAT(in.problems, SizeIs(3));
  EXPECT_FALSE(in.teacher.has_value());
}

TEST_F(JobInputsTest, TeacherFilesAreEachChecked) {
  const std::string dir = Path("bare");
  std::filesystem::create_directories(dir);
  lft::v1::JobSpec spec = Spec(dir);
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("teacher.path", dir + "/tokenizer.json "
                                                            "does not exist"));
  EXPECT_THAT(in.problems,
              HasProblem("teacher.path", dir + "/config.json does not exist"));

  std::ofstream(dir + "/config.json") << kConfig;
  std::ofstream(dir + "/tokenizer.json") << "not json";
  in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("teacher.path",
                                      "tokenizer.json is not a JSON object"));
  EXPECT_THAT(in.problems, HasProblem("teacher.path",
                                      "neither model.safetensors nor "
                                      "model.safetensors.index.json exists"));

  std::ofstream(dir + "/config.json") << R"({"hidden_size": 8})";
  in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("teacher.path", "config.json: field \""));
}

// Shapes are read from the safetensors header and compared with the
// config, without loading a weight.
TEST_F(JobInputsTest, WeightShapesAreCheckedAgainstTheConfig) {
  lft::v1::JobSpec spec =
      Spec(MakeTeacher("gpt_neox.layers.1.attention.dense.weight",
                       "gpt_neox.layers.0.mlp.dense_h_to_4h.bias"));
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems,
              HasProblem("teacher.path",
                         "tensor \"gpt_neox.layers.1.attention.dense.weight\" "
                         "has shape [1], config.json needs [8, 8]"));
  EXPECT_THAT(in.problems,
              HasProblem("teacher.path",
                         "missing tensor "
                         "\"gpt_neox.layers.0.mlp.dense_h_to_4h.bias\""));
  EXPECT_THAT(in.problems, SizeIs(2));

  // A truncated weight file is named, not opened blindly.
  const std::string weights = Path("teacher/model.safetensors");
  std::filesystem::resize_file(weights, 100);
  in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("teacher.path", "model.safetensors"));
}

// The proto says globs are expanded by the coordinator; they were not.
TEST_F(JobInputsTest, GlobsAreExpandedInSortedOrder) {
  Write("b-01.jsonl.zst", Zstd());
  Write("b-00.jsonl.zst", Zstd());
  lft::v1::JobSpec spec = Spec(MakeTeacher());
  spec.mutable_corpus()->clear_jsonl_zst_paths();
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("b-*.jsonl.zst"));
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("a.jsonl.zst"));
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, IsEmpty());
  EXPECT_THAT(spec.corpus().jsonl_zst_paths(),
              ElementsAre(Path("b-00.jsonl.zst"), Path("b-01.jsonl.zst"),
                          Path("a.jsonl.zst")));

  spec.mutable_corpus()->clear_jsonl_zst_paths();
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("c-*.jsonl.zst"));
  in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("corpus.jsonl_zst_paths[0]",
                                      "pattern " + Path("c-*.jsonl.zst") +
                                          " matches no file"));
}

// A .jsonl path was reported as a missing .idx.
TEST_F(JobInputsTest, AFileOfTheWrongFormatIsNamedAsSuch) {
  Write("plain.jsonl", "{\"text\": \"hi\"}\n");
  Write("gz.jsonl.zst", "\x1f\x8b\x08\x00");
  lft::v1::JobSpec spec = Spec(MakeTeacher());
  spec.mutable_corpus()->clear_jsonl_zst_paths();
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("plain.jsonl"));
  spec.mutable_corpus()->add_jsonl_zst_paths(Path("gz.jsonl.zst"));
  spec.mutable_evaluation()->set_heldout_paths(0, Path("plain.jsonl"));
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems,
              HasProblem("corpus.jsonl_zst_paths[0]",
                         "plain.jsonl is not zstd-compressed: it looks like "
                         "plain JSON Lines"));
  EXPECT_THAT(in.problems, HasProblem("corpus.jsonl_zst_paths[1]",
                                      "is gzip-compressed, not zstd"));
  EXPECT_THAT(in.problems, HasProblem("evaluation.heldout_paths[0]",
                                      "is not zstd-compressed"));

  spec = Spec(MakeTeacher());
  spec.mutable_corpus()->clear_jsonl_zst_paths();
  spec.mutable_corpus()->add_megatron_prefixes(Path("a.jsonl.zst"));
  spec.mutable_corpus()->add_megatron_prefixes(Path("pile_text"));
  Write("pile_text.bin", "");
  Write("pile_text.idx", "garbage!!");
  in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems,
              HasProblem("corpus.megatron_prefixes[0]",
                         "is a JSON Lines file, not a Megatron prefix; list "
                         "it under jsonl_zst_paths"));
  EXPECT_THAT(in.problems, HasProblem("corpus.megatron_prefixes[1]",
                                      "is not a Megatron index"));
}

// A FIFO would block whoever opens it; it is refused from its stat.
TEST_F(JobInputsTest, AFifoIsRefusedWithoutOpeningIt) {
  ASSERT_EQ(mkfifo(Path("fifo.jsonl.zst").c_str(), 0600), 0)
      << std::strerror(errno);
  lft::v1::JobSpec spec = Spec(MakeTeacher());
  spec.mutable_corpus()->set_jsonl_zst_paths(0, Path("fifo.jsonl.zst"));
  JobInputs in = CheckJobInputs(&spec);
  EXPECT_THAT(in.problems, HasProblem("corpus.jsonl_zst_paths[0]",
                                      "is not a regular file (a FIFO)"));
}

}  // namespace
}  // namespace lft
