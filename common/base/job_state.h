// Names and predicates of the job and task states (lft.v1.JobState,
// lft.v1.TaskState), shared by the coordinator, lftctl and the metrics
// labels. Pure functions of the enum; thread-safe.
#ifndef LFT_COMMON_BASE_JOB_STATE_H_
#define LFT_COMMON_BASE_JOB_STATE_H_

#include <string>

#include "lft/v1/job.pb.h"
#include "lft/v1/worker.pb.h"

namespace lft {

// "JOB_STATE_TRAINING" -> "TRAINING"; for messages and metric labels.
std::string ShortJobState(lft::v1::JobState state);
// "TASK_STATE_LEASED" -> "LEASED".
std::string ShortTaskState(lft::v1::TaskState state);
// SUCCEEDED, FAILED and CANCELLED: the job will not change again.
bool IsTerminal(lft::v1::JobState state);

}  // namespace lft

#endif  // LFT_COMMON_BASE_JOB_STATE_H_
