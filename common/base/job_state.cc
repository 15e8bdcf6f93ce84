#include "common/base/job_state.h"

namespace lft {

std::string ShortJobState(lft::v1::JobState state) {
  std::string name = lft::v1::JobState_Name(state);
  const std::string prefix = "JOB_STATE_";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

std::string ShortTaskState(lft::v1::TaskState state) {
  std::string name = lft::v1::TaskState_Name(state);
  const std::string prefix = "TASK_STATE_";
  return name.rfind(prefix, 0) == 0 ? name.substr(prefix.size()) : name;
}

bool IsTerminal(lft::v1::JobState state) {
  return state == lft::v1::JOB_STATE_SUCCEEDED ||
         state == lft::v1::JOB_STATE_FAILED ||
         state == lft::v1::JOB_STATE_CANCELLED;
}

}  // namespace lft
