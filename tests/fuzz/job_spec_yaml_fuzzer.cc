// libFuzzer target: lftctl's YAML spec reader (YAML -> proto JSON -> JobSpec).
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "lftctl/job_spec_yaml.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lft::ParseJobSpecYaml(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
