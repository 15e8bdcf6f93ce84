// The one place where a JobSpec (proto/lft/v1/job.proto) is defaulted and
// validated. The coordinator calls it on Submit, lftctl before sending, and
// workers trust what it accepted.
#ifndef LFT_COMMON_BASE_JOB_SPEC_H_
#define LFT_COMMON_BASE_JOB_SPEC_H_

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
// InvalidArgument with the parser's message on malformed input. Defaults are
// not applied.
absl::StatusOr<lft::v1::JobSpec> ParseJobSpecJson(absl::string_view json);

}  // namespace lft

#endif  // LFT_COMMON_BASE_JOB_SPEC_H_
