// A TaskRunner that does no real work: it sleeps in proportion to the
// task's size, reports plausible progress, and can crash the process on
// purpose. Used by lft-fake-worker and the coordinator tests.
#ifndef LFT_TESTS_FAKES_FAKE_TASK_RUNNER_H_
#define LFT_TESTS_FAKES_FAKE_TASK_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "worker/agent/task_runner.h"

namespace lft {

struct FakeTaskRunnerOptions {
  int64_t ms_per_document = 2;
  uint64_t tokens_per_document = 200;
  int64_t ms_per_step = 5;
  int64_t ms_per_sequence = 5;
  // Documents assumed when an extraction range is open-ended.
  uint64_t documents_if_unknown = 100;
  // Training steps when the spec budgets tokens only.
  uint64_t steps_if_unknown = 50;
  // After this many units (documents, steps, sequences) of one task, call
  // on_crash (lft-fake-worker kills itself); 0 = never.
  uint64_t crash_after_units = 0;
  std::function<void()> on_crash;
  // Fail every task with this message (tests of the retry budget).
  std::string fail_with;
  // Throw std::bad_alloc from Run, as an oversized batch would.
  bool throw_bad_alloc = false;
};

// One Run at a time.
class FakeTaskRunner : public TaskRunner {
 public:
  explicit FakeTaskRunner(FakeTaskRunnerOptions options)
      : options_(std::move(options)) {}
  absl::StatusOr<TaskResult> Run(const lft::v1::Task& task,
                                 TaskContext* context) override;

 private:
  absl::StatusOr<TaskResult> Extract(const lft::v1::Task& task,
                                     TaskContext* context);
  absl::StatusOr<TaskResult> Train(const lft::v1::Task& task,
                                   TaskContext* context);
  absl::StatusOr<TaskResult> Evaluate(const lft::v1::Task& task,
                                      TaskContext* context);
  // Sleeps `ms`; false if cancelled meanwhile.
  bool Work(int64_t ms, uint64_t unit, TaskContext* context);

  const FakeTaskRunnerOptions options_;
};

}  // namespace lft

#endif  // LFT_TESTS_FAKES_FAKE_TASK_RUNNER_H_
