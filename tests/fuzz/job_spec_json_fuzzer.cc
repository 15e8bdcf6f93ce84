// libFuzzer target: the JobSpec JSON parser, then defaults and validation,
// as lft-coordinator's Submit and lftctl run them on user input.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/base/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto spec = lft::ParseJobSpecJson(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!spec.ok()) return 0;
  lft::ApplyJobSpecDefaults(&*spec);
  (void)lft::SpecProblemsToStatus(lft::ValidateJobSpec(*spec));
  return 0;
}
