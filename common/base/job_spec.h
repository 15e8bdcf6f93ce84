// The one place where a JobSpec (proto/lft/v1/job.proto) is defaulted and
// validated. The coordinator calls it on Submit, lftctl before sending, and
// workers trust what it accepted.
#ifndef LFT_COMMON_BASE_JOB_SPEC_H_
#define LFT_COMMON_BASE_JOB_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lft/v1/job.pb.h"

namespace lft {

// One thing wrong with a spec: the field's path ("training.learning_rate",
// "evaluation.steps[2]") and what to do about it.
struct SpecProblem {
  std::string field;
  std::string message;
  bool operator==(const SpecProblem& o) const {
    return field == o.field && message == o.message;
  }
};

// What validation needs to know of the teacher, when it is known (the
// coordinator reads it from the teacher's config.json).
struct TeacherShape {
  int num_layers = 0;
  int max_position_embeddings = 0;
};

// The stated limits of a spec's size fields (docs/api.md, "Limits"). They
// keep every accepted spec within what a worker can allocate: the tokens one
// trainer rank holds per step, the steps whose losses it records, the pairs
// a streaming store buffers.
inline constexpr uint32_t kMaxSequenceLength = 1 << 16;
inline constexpr uint32_t kMaxSolverSteps = 64;
inline constexpr uint32_t kMaxTrainerRanks = 4096;
inline constexpr uint32_t kMaxTeacherWorkers = 4096;
inline constexpr uint32_t kMaxGlobalBatchSequences = 1 << 16;
// Sequences per rank times sequence_length: 2^20 tokens, e.g. 512 sequences
// of 2048 tokens; at hidden 4096 in f32 the pair batch alone is 32 GiB.
inline constexpr uint64_t kMaxTokensPerRankStep = uint64_t{1} << 20;
inline constexpr uint64_t kMaxTrainingSteps = 100'000'000;
inline constexpr uint64_t kMaxStreamingBufferPairs = uint64_t{1} << 24;
inline constexpr uint32_t kMaxEvaluationSequences = 1 << 16;
inline constexpr uint32_t kMaxSkipBaselines = 16;
// The evaluator's baselines run inside one evaluation task: the linear
// map's normal equations read this many training tokens at most (2^26, 256
// GiB of bf16 pairs at hidden 1024), the regression baseline trains this
// many steps at most, each of at most kMaxTokensPerRankStep tokens.
inline constexpr uint64_t kMaxLinearTokens = uint64_t{1} << 26;
inline constexpr uint32_t kMaxRegressionSteps = 1'000'000;
// evaluation.linear_tokens when linear_baseline is set and it is 0.
inline constexpr uint64_t kDefaultLinearTokens = 262144;

// Fills unset fields with the documented defaults (docs/api.md); fields the
// user set are left alone.
void ApplyJobSpecDefaults(lft::v1::JobSpec* spec);

// Every problem with `spec`, in field order; empty if it is valid. With
// `teacher`, also checks the block and sequence length against it.
std::vector<SpecProblem> ValidateJobSpec(
    const lft::v1::JobSpec& spec,
    const std::optional<TeacherShape>& teacher = std::nullopt);

// OK if `problems` is empty, else InvalidArgument listing each as
// "field: message", one per line.
absl::Status SpecProblemsToStatus(const std::vector<SpecProblem>& problems);

// Parses a spec written as JSON (proto3 JSON mapping: "sequenceLength" or
// "sequence_length", enums by name, e.g. "method": "METHOD_FW" or "fw").
// InvalidArgument on malformed input: "line L, column C: ..." (1-based) for
// a syntax error; the field's path for a bool given as anything but true or
// false (protobuf's parser alone would take "yes"); the parser's message
// otherwise (unknown field, unknown enum name). Defaults are not applied.
absl::StatusOr<lft::v1::JobSpec> ParseJobSpecJson(absl::string_view json);

}  // namespace lft

#endif  // LFT_COMMON_BASE_JOB_SPEC_H_
