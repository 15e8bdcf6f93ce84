#include "latent-store/checkpoint_names.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"

namespace lft {
namespace {

constexpr char kTrainingPrefix[] = "step-";

}  // namespace

std::string TrainingCheckpointName(uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%010llu", kTrainingPrefix,
                static_cast<unsigned long long>(step));
  return buf;
}

std::optional<uint64_t> TrainingCheckpointStep(absl::string_view name) {
  if (!IsTrainingCheckpoint(name)) return std::nullopt;
  uint64_t step = 0;
  if (!absl::SimpleAtoi(name.substr(sizeof(kTrainingPrefix) - 1), &step)) {
    return std::nullopt;
  }
  return step;
}

bool IsTrainingCheckpoint(absl::string_view name) {
  return absl::StartsWith(name, kTrainingPrefix);
}

}  // namespace lft
