// lftctl, the user's client, as a library function so tests call it
// in-process as well as through the binary. Commands: submit, get, list,
// watch, cancel, and pull (CheckpointService of the coordinator or of a
// store) (docs/api.md). Exit codes
// (kExit*) are part of the interface.
#ifndef LFT_LFTCTL_LFTCTL_H_
#define LFT_LFTCTL_LFTCTL_H_

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "lft/v1/job.pb.h"

namespace lft {

inline constexpr int kExitOk = 0;
// watch: the job ended FAILED or CANCELLED.
inline constexpr int kExitJobFailed = 1;
// Bad command line, or the coordinator rejected the spec (INVALID_ARGUMENT,
// UNIMPLEMENTED).
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotFound = 3;
// Coordinator unreachable, timed out, or refused the token.
inline constexpr int kExitUnavailable = 4;
// The request does not fit the job's state (e.g. cancel a finished job).
inline constexpr int kExitFailedPrecondition = 5;
inline constexpr int kExitInternal = 6;
// pull: the bytes received do not hash to the sha256 the store recorded
// (DATA_LOSS); nothing is left at the output path.
inline constexpr int kExitDataLoss = 7;

// Where lftctl finds the coordinator without --server (lft-coordinator's
// default --listen). `lftctl pull` asks its CheckpointService unless
// --store or $LFT_STORE_ADDRESS names a store to pull from directly.
inline constexpr char kDefaultCoordinatorAddress[] = "127.0.0.1:7070";

// The exit code for a failed call with this status.
int ExitCodeFor(const absl::Status& status);

// Applies submit's override flags to `spec`: name, teacher, corpus (one
// jsonl.zst path, replacing the list), block "M:N", method
// (sfm|fw|hybrid|regression), trainer_ranks, max_steps, sequence_length,
// documents_per_shard. InvalidArgument naming the flag on a bad value.
absl::Status ApplySpecOverrides(
    const std::vector<std::pair<std::string, std::string>>& flags,
    lft::v1::JobSpec* spec);

// "[#####-----]  52%  1.2k/2.3k tokens  340 tokens/s  ETA 3s" for one phase.
std::string FormatPhaseProgress(const lft::v1::PhaseProgress& p, bool bar);

// Runs lftctl with `args` (without the program name); returns the exit code.
int LftctlMain(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err, bool stdout_is_tty);

}  // namespace lft

#endif  // LFT_LFTCTL_LFTCTL_H_
