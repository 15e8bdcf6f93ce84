// Reads what spec validation needs from a teacher's HF config.json.
#ifndef LFT_COORDINATOR_TEACHER_CONFIG_H_
#define LFT_COORDINATOR_TEACHER_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/job_spec.h"

namespace lft {

// The shape in `<teacher_dir>/config.json` (num_hidden_layers,
// max_position_embeddings). std::nullopt if the file does not exist or
// cannot be read here (the teacher may live on the workers only);
// InvalidArgument naming the file and field if it exists but is malformed.
absl::StatusOr<std::optional<TeacherShape>> ReadTeacherShape(
    const std::string& teacher_dir);

}  // namespace lft

#endif  // LFT_COORDINATOR_TEACHER_CONFIG_H_
