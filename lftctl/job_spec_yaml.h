// Job specs written as YAML. A YAML spec is converted to the JSON that
// ParseJobSpecJson takes (same field names: snake_case or lowerCamelCase,
// enums by name), so JSON and YAML specs go through one parser and one
// validator (ValidateJobSpec). The conversion is guided by the message's
// descriptor, which lets it give YAML's line and column for problems the
// JSON parser would report without a position: an unknown field, a list
// where a value belongs, a number that is not one.
#ifndef LFT_LFTCTL_JOB_SPEC_YAML_H_
#define LFT_LFTCTL_JOB_SPEC_YAML_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "lft/v1/job.pb.h"

namespace lft {

// Converts the YAML document `yaml` to JSON text for a message of type
// `descriptor`. InvalidArgument whose message starts with "line L, column
// C:" (1-based) for malformed YAML, an unknown field (naming its path, e.g.
// training.learning_rat), or a value of the wrong shape or type.
absl::StatusOr<std::string> YamlToProtoJson(
    absl::string_view yaml, const google::protobuf::Descriptor* descriptor);

// YamlToProtoJson for lft.v1.JobSpec, then ParseJobSpecJson. Defaults are not
// applied.
absl::StatusOr<lft::v1::JobSpec> ParseJobSpecYaml(absl::string_view yaml);

// True if the spec file `path` with `content` is YAML: by extension (.yaml,
// .yml; .json is JSON), otherwise by content (JSON starts with '{').
bool IsYamlSpec(absl::string_view path, absl::string_view content);

// ParseJobSpecYaml or ParseJobSpecJson, as IsYamlSpec chooses.
absl::StatusOr<lft::v1::JobSpec> ParseJobSpecFileContent(
    absl::string_view path, absl::string_view content);

}  // namespace lft

#endif  // LFT_LFTCTL_JOB_SPEC_YAML_H_
