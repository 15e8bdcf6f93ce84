// The names a job's blobs carry in the store's checkpoint namespace, in one
// place: the trainer writes step-N checkpoints, the evaluator its reports
// and plots, lftctl tells them apart. Pure functions; thread-safe.
#ifndef LFT_LATENT_STORE_CHECKPOINT_NAMES_H_
#define LFT_LATENT_STORE_CHECKPOINT_NAMES_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace lft {

// Evaluation artifacts (worker/evaluator/evaluation_runner.h).
inline constexpr char kReportJsonName[] = "report.json";
inline constexpr char kReportMarkdownName[] = "report.md";
inline constexpr char kLossPlotName[] = "loss.png";
inline constexpr char kKlPlotName[] = "kl_vs_k.png";
inline constexpr char kCurvePlotName[] = "nmse_vs_tokens.png";

// "step-0000000042": the trainer's checkpoint after `step` optimizer steps;
// the 10 digits make the names sort by step.
std::string TrainingCheckpointName(uint64_t step);

// The step of a TrainingCheckpointName; nullopt for any other name.
std::optional<uint64_t> TrainingCheckpointStep(absl::string_view name);

// True for names that TrainingCheckpointName makes (the prefix "step-").
bool IsTrainingCheckpoint(absl::string_view name);

}  // namespace lft

#endif  // LFT_LATENT_STORE_CHECKPOINT_NAMES_H_
