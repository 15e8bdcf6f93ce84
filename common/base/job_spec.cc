#include "common/base/job_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

using lft::v1::JobKind;
using lft::v1::JobSpec;
using lft::v1::Method;

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using Json = nlohmann::json;

class ProblemList {
 public:
  void Add(std::string field, std::string message) {
    problems_.push_back({std::move(field), std::move(message)});
  }
  std::vector<SpecProblem> Take() { return std::move(problems_); }

 private:
  std::vector<SpecProblem> problems_;
};

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-'))
      return false;
  }
  return name.front() != '-' && name.back() != '-';
}

// "42 is not a known value of lft.v1.Solver": enums arrive as integers over
// raw RPC, and proto3 keeps unknown values instead of rejecting them.
std::string UnknownEnum(int value, const google::protobuf::EnumDescriptor* d) {
  return absl::StrCat(value, " is not a known value of ", d->full_name());
}

void ValidateTraining(const lft::v1::TrainingSpec& t, ProblemList* p) {
  const Method m = t.method();
  if (!lft::v1::Method_IsValid(m)) {
    p->Add("training.method", UnknownEnum(m, lft::v1::Method_descriptor()) +
                                  "; set one of sfm, fw, hybrid, regression");
  } else if (m == lft::v1::METHOD_UNSPECIFIED) {
    p->Add("training.method", "set one of sfm, fw, hybrid, regression");
  }
  if (m == lft::v1::METHOD_HYBRID &&
      !(std::isfinite(t.hybrid_alpha()) && t.hybrid_alpha() > 0)) {
    p->Add("training.hybrid_alpha",
           absl::StrCat("must be a positive number for the hybrid method, got ",
                        t.hybrid_alpha()));
  }
  if ((m == lft::v1::METHOD_FW || m == lft::v1::METHOD_HYBRID) &&
      (t.flow_walking_steps() < 1 ||
       t.flow_walking_steps() > kMaxSolverSteps)) {
    p->Add("training.flow_walking_steps",
           absl::StrCat("must be in [1, ", kMaxSolverSteps, "], got ",
                        t.flow_walking_steps(), " (the paper uses 3)"));
  }
  if (!lft::v1::Solver_IsValid(t.solver())) {
    p->Add("training.solver",
           UnknownEnum(t.solver(), lft::v1::Solver_descriptor()) +
               "; set euler or midpoint");
  } else if (t.solver() == lft::v1::SOLVER_UNSPECIFIED) {
    p->Add("training.solver", "set euler or midpoint");
  }
  if (!lft::v1::EstimatorInit_IsValid(t.estimator_init())) {
    p->Add(
        "training.estimator_init",
        UnknownEnum(t.estimator_init(), lft::v1::EstimatorInit_descriptor()) +
            "; set teacher_layer or adaln_zero");
  }
  if (t.max_steps() == 0 && t.max_tokens() == 0) {
    p->Add("training.max_steps", "set a budget: max_steps or max_tokens");
  }
  if (t.max_steps() > kMaxTrainingSteps) {
    p->Add("training.max_steps",
           absl::StrCat("must be at most ", kMaxTrainingSteps, ", got ",
                        t.max_steps()));
  }
  if (t.global_batch_sequences() == 0) {
    p->Add("training.global_batch_sequences", "must be at least 1");
  } else if (t.global_batch_sequences() > kMaxGlobalBatchSequences) {
    p->Add("training.global_batch_sequences",
           absl::StrCat("must be at most ", kMaxGlobalBatchSequences, ", got ",
                        t.global_batch_sequences()));
  }
  if (!(std::isfinite(t.learning_rate()) && t.learning_rate() > 0 &&
        t.learning_rate() < 1)) {
    p->Add("training.learning_rate",
           absl::StrCat("must be in (0, 1), got ", t.learning_rate()));
  }
  if (!(std::isfinite(t.weight_decay()) && t.weight_decay() >= 0)) {
    p->Add("training.weight_decay",
           absl::StrCat("must be >= 0, got ", t.weight_decay()));
  }
  if (!(std::isfinite(t.gradient_clip_norm()) && t.gradient_clip_norm() >= 0)) {
    p->Add("training.gradient_clip_norm",
           absl::StrCat("must be >= 0 (0 disables clipping), got ",
                        t.gradient_clip_norm()));
  }
  if (t.max_steps() > 0 && t.warmup_steps() > t.max_steps()) {
    p->Add("training.warmup_steps",
           absl::StrCat("warm-up of ", t.warmup_steps(),
                        " steps is longer than the budget of ", t.max_steps()));
  }
  if (t.trainer_ranks() < 1 || t.trainer_ranks() > kMaxTrainerRanks) {
    p->Add("training.trainer_ranks",
           absl::StrCat("must be in [1, ", kMaxTrainerRanks, "], got ",
                        t.trainer_ranks()));
  } else if (t.global_batch_sequences() % t.trainer_ranks() != 0) {
    p->Add("training.global_batch_sequences",
           absl::StrCat("global batch ", t.global_batch_sequences(),
                        " does not divide evenly over ", t.trainer_ranks(),
                        " trainer ranks"));
  }
  if (t.checkpoint_every_steps() == 0) {
    p->Add("training.checkpoint_every_steps", "must be at least 1");
  }
  if (t.streaming_buffer_pairs() > kMaxStreamingBufferPairs) {
    p->Add("training.streaming_buffer_pairs",
           absl::StrCat("must be at most ", kMaxStreamingBufferPairs, ", got ",
                        t.streaming_buffer_pairs()));
  } else if (t.streaming() && t.streaming_buffer_pairs() > 0 &&
             t.streaming_buffer_pairs() < t.global_batch_sequences()) {
    p->Add("training.streaming_buffer_pairs",
           absl::StrCat("buffer of ", t.streaming_buffer_pairs(),
                        " pairs is smaller than one global batch of ",
                        t.global_batch_sequences(),
                        "; the trainer could never fill a batch"));
  }
}

// What one trainer rank holds per step grows with its share of the batch
// times the sequence length: bounding the tokens per rank bounds the memory
// a worker must allocate, whatever the two factors are.
void ValidateBatchSize(const JobSpec& spec, ProblemList* p) {
  const lft::v1::TrainingSpec& t = spec.training();
  if (t.global_batch_sequences() == 0 || t.trainer_ranks() == 0 ||
      t.global_batch_sequences() > kMaxGlobalBatchSequences ||
      spec.sequence_length() > kMaxSequenceLength) {
    return;  // reported on their own
  }
  const uint64_t per_rank =
      (uint64_t{t.global_batch_sequences()} + t.trainer_ranks() - 1) /
      t.trainer_ranks();
  const uint64_t tokens = per_rank * spec.sequence_length();
  if (tokens > kMaxTokensPerRankStep) {
    p->Add("training.global_batch_sequences",
           absl::StrCat(per_rank, " sequences per rank x ",
                        spec.sequence_length(), " tokens = ", tokens,
                        " tokens per rank and step, more than the limit of ",
                        kMaxTokensPerRankStep,
                        "; lower the batch or add trainer ranks"));
  }
  if (t.max_steps() == 0 && t.max_tokens() > 0) {
    const uint64_t step_tokens =
        uint64_t{t.global_batch_sequences()} * spec.sequence_length();
    const uint64_t steps = t.max_tokens() / std::max<uint64_t>(1, step_tokens);
    if (steps > kMaxTrainingSteps) {
      p->Add("training.max_tokens",
             absl::StrCat(t.max_tokens(), " tokens are ", steps, " steps of ",
                          step_tokens, " tokens, more than the limit of ",
                          kMaxTrainingSteps, " steps"));
    }
  }
}

void ValidateEvaluation(const JobSpec& spec, ProblemList* p) {
  const lft::v1::EvaluationSpec& e = spec.evaluation();
  if (e.heldout_paths().empty()) {
    p->Add("evaluation.heldout_paths",
           "list at least one held-out Pile-format .jsonl.zst file (the "
           "evaluator scores on it)");
  }
  if (e.steps().empty()) p->Add("evaluation.steps", "list at least one k");
  for (int i = 0; i < e.steps_size(); ++i) {
    if (e.steps(i) < 1 || e.steps(i) > kMaxSolverSteps) {
      p->Add(absl::StrCat("evaluation.steps[", i, "]"),
             absl::StrCat("must be in [1, ", kMaxSolverSteps, "], got ",
                          e.steps(i)));
    }
  }
  for (int i = 0; i < e.solvers_size(); ++i) {
    if (!lft::v1::Solver_IsValid(e.solvers(i))) {
      p->Add(absl::StrCat("evaluation.solvers[", i, "]"),
             UnknownEnum(e.solvers(i), lft::v1::Solver_descriptor()) +
                 "; set euler or midpoint");
    } else if (e.solvers(i) == lft::v1::SOLVER_UNSPECIFIED) {
      p->Add(absl::StrCat("evaluation.solvers[", i, "]"),
             "set euler or midpoint");
    }
  }
  if (e.skip_baselines() > kMaxSkipBaselines) {
    p->Add("evaluation.skip_baselines",
           absl::StrCat("at most ", kMaxSkipBaselines, ", got ",
                        e.skip_baselines()));
  }
  if (e.max_sequences() > kMaxEvaluationSequences) {
    p->Add("evaluation.max_sequences",
           absl::StrCat("must be at most ", kMaxEvaluationSequences, ", got ",
                        e.max_sequences()));
  }
  if (e.linear_tokens() > kMaxLinearTokens) {
    p->Add("evaluation.linear_tokens",
           absl::StrCat("must be at most ", kMaxLinearTokens, ", got ",
                        e.linear_tokens()));
  }
  if (e.regression_steps() > kMaxRegressionSteps) {
    p->Add("evaluation.regression_steps",
           absl::StrCat("must be at most ", kMaxRegressionSteps, ", got ",
                        e.regression_steps()));
  }
  if (e.regression_batch_sequences() > kMaxGlobalBatchSequences) {
    p->Add("evaluation.regression_batch_sequences",
           absl::StrCat("must be at most ", kMaxGlobalBatchSequences, ", got ",
                        e.regression_batch_sequences()));
  } else if (spec.sequence_length() <= kMaxSequenceLength) {
    // The evaluator holds a whole regression batch in one process.
    const uint64_t tokens =
        uint64_t{e.regression_batch_sequences()} * spec.sequence_length();
    if (tokens > kMaxTokensPerRankStep) {
      p->Add("evaluation.regression_batch_sequences",
             absl::StrCat(e.regression_batch_sequences(), " sequences x ",
                          spec.sequence_length(), " tokens = ", tokens,
                          " tokens per step, more than the limit of ",
                          kMaxTokensPerRankStep));
    }
  }
}

void ValidateCorpus(const lft::v1::CorpusSpec& c, ProblemList* p) {
  const bool jsonl = c.jsonl_zst_paths_size() > 0;
  const bool megatron = c.megatron_prefixes_size() > 0;
  if (!jsonl && !megatron) {
    p->Add("corpus", "name jsonl_zst_paths or megatron_prefixes");
  } else if (jsonl && megatron) {
    p->Add("corpus", "name jsonl_zst_paths or megatron_prefixes, not both");
  }
  for (int i = 0; i < c.jsonl_zst_paths_size(); ++i) {
    if (c.jsonl_zst_paths(i).empty()) {
      p->Add(absl::StrCat("corpus.jsonl_zst_paths[", i, "]"), "is empty");
    }
  }
  for (int i = 0; i < c.megatron_prefixes_size(); ++i) {
    if (c.megatron_prefixes(i).empty()) {
      p->Add(absl::StrCat("corpus.megatron_prefixes[", i, "]"), "is empty");
    }
  }
}

}  // namespace

void ApplyJobSpecDefaults(JobSpec* spec) {
  if (spec->kind() == lft::v1::JOB_KIND_UNSPECIFIED) {
    spec->set_kind(lft::v1::JOB_KIND_COMPRESS);
  }
  if (spec->sequence_length() == 0) spec->set_sequence_length(256);
  if (spec->storage_dtype() == lft::v1::STORAGE_DTYPE_UNSPECIFIED) {
    spec->set_storage_dtype(lft::v1::STORAGE_DTYPE_BF16);
  }
  lft::v1::TrainingSpec* t = spec->mutable_training();
  if (t->method() == lft::v1::METHOD_UNSPECIFIED)
    t->set_method(lft::v1::METHOD_FW);
  if (t->method() == lft::v1::METHOD_HYBRID && t->hybrid_alpha() == 0) {
    t->set_hybrid_alpha(0.001);
  }
  if (t->flow_walking_steps() == 0) t->set_flow_walking_steps(3);
  if (t->solver() == lft::v1::SOLVER_UNSPECIFIED)
    t->set_solver(lft::v1::SOLVER_MIDPOINT);
  if (t->max_steps() == 0 && t->max_tokens() == 0) t->set_max_steps(1000);
  if (t->global_batch_sequences() == 0) t->set_global_batch_sequences(16);
  if (t->learning_rate() == 0) t->set_learning_rate(3e-4);
  if (t->weight_decay() == 0) t->set_weight_decay(0.01);
  if (t->warmup_steps() == 0) {
    const uint64_t steps = t->max_steps() > 0 ? t->max_steps() : 1000;
    t->set_warmup_steps(
        static_cast<uint32_t>(std::min<uint64_t>(100, steps / 10)));
  }
  if (t->gradient_clip_norm() == 0) t->set_gradient_clip_norm(1.0);
  if (t->checkpoint_every_steps() == 0) t->set_checkpoint_every_steps(200);
  if (t->trainer_ranks() == 0) t->set_trainer_ranks(1);
  if (t->streaming() && t->streaming_buffer_pairs() == 0) {
    t->set_streaming_buffer_pairs(4ull * t->global_batch_sequences());
  }
  if (t->estimator_init() == lft::v1::ESTIMATOR_INIT_UNSPECIFIED) {
    t->set_estimator_init(lft::v1::ESTIMATOR_INIT_TEACHER_LAYER);
  }
  if (t->seed() == 0) t->set_seed(1234);
  lft::v1::EvaluationSpec* e = spec->mutable_evaluation();
  if (e->steps().empty()) {
    for (uint32_t k : {1u, 3u, 8u}) e->add_steps(k);
  }
  if (e->solvers().empty()) {
    e->add_solvers(lft::v1::SOLVER_EULER);
    e->add_solvers(lft::v1::SOLVER_MIDPOINT);
  }
  if (e->max_sequences() == 0) e->set_max_sequences(64);
  if (!e->has_regression_baseline()) e->set_regression_baseline(true);
  if (e->linear_baseline() && e->linear_tokens() == 0) {
    e->set_linear_tokens(kDefaultLinearTokens);
  }
}

std::vector<SpecProblem> ValidateJobSpec(
    const JobSpec& spec, const std::optional<TeacherShape>& teacher) {
  ProblemList p;
  if (!ValidName(spec.name())) {
    p.Add("name",
          absl::StrCat("\"", spec.name(),
                       "\" is not 1-63 characters of [a-z0-9-] starting "
                       "and ending with a letter or digit"));
  }
  const JobKind kind = spec.kind();
  if (!lft::v1::JobKind_IsValid(kind)) {
    p.Add("kind", UnknownEnum(kind, lft::v1::JobKind_descriptor()) +
                      "; set compress, analyze or pretrain");
  } else if (kind == lft::v1::JOB_KIND_UNSPECIFIED) {
    p.Add("kind", "set compress, analyze or pretrain");
  }
  if (spec.teacher().path().empty()) {
    p.Add("teacher.path",
          kind == lft::v1::JOB_KIND_PRETRAIN
              ? "name the directory to write the new teacher to"
              : "name the teacher's HF directory (config.json, *.safetensors, "
                "tokenizer.json)");
  }
  const std::string& dtype = spec.teacher().compute_dtype();
  if (!dtype.empty() && dtype != "float32" && dtype != "bfloat16") {
    p.Add("teacher.compute_dtype",
          absl::StrCat("\"", dtype, "\" is not float32 or bfloat16"));
  }
  ValidateCorpus(spec.corpus(), &p);

  if (kind == lft::v1::JOB_KIND_COMPRESS) {
    const uint32_t m = spec.block().first_layer();
    const uint32_t n = spec.block().end_layer();
    if (n <= m) {
      p.Add("block",
            absl::StrCat("block [", m, ", ", n,
                         ") is empty: end_layer must exceed first_layer"));
    } else if (teacher.has_value() &&
               n > static_cast<uint32_t>(teacher->num_layers)) {
      p.Add("block",
            absl::StrCat("block [", m, ", ", n, ") is outside the teacher's ",
                         teacher->num_layers, " layers"));
    }
    if (!lft::v1::StorageDtype_IsValid(spec.storage_dtype())) {
      p.Add("storage_dtype", UnknownEnum(spec.storage_dtype(),
                                         lft::v1::StorageDtype_descriptor()) +
                                 "; set f32, bf16, f16 or fp8_e4m3");
    } else if (spec.storage_dtype() == lft::v1::STORAGE_DTYPE_UNSPECIFIED) {
      p.Add("storage_dtype", "set f32, bf16, f16 or fp8_e4m3");
    }
    ValidateTraining(spec.training(), &p);
    ValidateEvaluation(spec, &p);
    ValidateBatchSize(spec, &p);
  }
  if (spec.teacher_workers() > kMaxTeacherWorkers) {
    p.Add("teacher_workers",
          absl::StrCat("must be at most ", kMaxTeacherWorkers, ", got ",
                       spec.teacher_workers()));
  }
  if (spec.sequence_length() < 2 ||
      spec.sequence_length() > kMaxSequenceLength) {
    p.Add("sequence_length", absl::StrCat("must be in [2, ", kMaxSequenceLength,
                                          "], got ", spec.sequence_length()));
  } else if (teacher.has_value() && teacher->max_position_embeddings > 0 &&
             spec.sequence_length() >
                 static_cast<uint32_t>(teacher->max_position_embeddings)) {
    p.Add("sequence_length",
          absl::StrCat(spec.sequence_length(), " exceeds the teacher's ",
                       teacher->max_position_embeddings, " positions"));
  }
  return p.Take();
}

absl::Status SpecProblemsToStatus(const std::vector<SpecProblem>& problems) {
  if (problems.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const SpecProblem& pr : problems) {
    lines.push_back(absl::StrCat(pr.field, ": ", pr.message));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid job spec (", problems.size(), " problem",
      problems.size() == 1 ? "" : "s", "):\n  ", absl::StrJoin(lines, "\n  ")));
}

namespace {

// "line L, column C" of the byte at 0-based `offset` of `text`.
std::string LineAndColumn(absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return absl::StrCat("line ", line, ", column ", column);
}

const FieldDescriptor* FindJsonField(const Descriptor* d,
                                     const std::string& key) {
  const FieldDescriptor* f = d->FindFieldByName(key);
  if (f != nullptr) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

// Bools must be JSON true or false: protobuf's parser also takes strings
// such as "yes", "t" or "0" and would silently turn a typo into a setting.
absl::Status CheckBools(const Json& value, const FieldDescriptor* f,
                        const std::string& path) {
  if (value.is_null()) return absl::OkStatus();
  if (f->is_repeated() && value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      const Json& item = value[i];
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL && !item.is_boolean())
        return absl::InvalidArgumentError(absl::StrCat(
            path, "[", i, "]: expected true or false, got ", item.dump()));
    }
    return absl::OkStatus();
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL && !value.is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected true or false, got ", value.dump()));
  }
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && value.is_object() &&
      !f->is_map()) {
    const Descriptor* d = f->message_type();
    for (const auto& [key, v] : value.items()) {
      const FieldDescriptor* sub = FindJsonField(d, key);
      if (sub == nullptr) continue;  // the proto parser names it
      LFT_RETURN_IF_ERROR(CheckBools(v, sub, absl::StrCat(path, ".", key)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ParseJobSpecJson(absl::string_view json) {
  Json tree;
  try {
    tree = Json::parse(json.begin(), json.end());
  } catch (const Json::parse_error& e) {
    // e.byte is 1-based: the byte at which parsing failed.
    const size_t at = e.byte > 0 ? e.byte - 1 : 0;
    std::string what = e.what();
    const size_t colon = what.rfind(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
    return absl::InvalidArgumentError(
        absl::StrCat("job spec is not valid JSON for lft.v1.JobSpec: ",
                     LineAndColumn(json, at), ": ", what));
  } catch (const Json::exception& e) {
    // Not a syntax error: a number beyond double's range (out_of_range 406)
    // or similar, which nlohmann reports without a position.
    std::string what = e.what();
    const size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    // The message quotes the offending number whole; keep a line short.
    if (what.size() > 160) what = absl::StrCat(what.substr(0, 157), "...");
    return absl::InvalidArgumentError(
        absl::StrCat("job spec is not valid JSON for lft.v1.JobSpec: ", what));
  }
  if (tree.is_object()) {
    const Descriptor* d = JobSpec::descriptor();
    for (const auto& [key, v] : tree.items()) {
      const FieldDescriptor* f = FindJsonField(d, key);
      if (f == nullptr) continue;
      absl::Status s = CheckBools(v, f, key);
      if (!s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "job spec is not valid JSON for lft.v1.JobSpec: ", s.message()));
      }
    }
  }
  JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &spec, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("job spec is not valid JSON for lft.v1.JobSpec: ",
                     std::string(status.message())));
  }
  return spec;
}

}  // namespace lft
