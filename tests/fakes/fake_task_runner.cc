#include "tests/fakes/fake_task_runner.h"

#include <new>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lft {

bool FakeTaskRunner::Work(int64_t ms, uint64_t unit, TaskContext* context) {
  if (options_.crash_after_units > 0 && unit >= options_.crash_after_units &&
      options_.on_crash) {
    options_.on_crash();
  }
  return !context->cancellation().WaitFor(absl::Milliseconds(ms));
}

absl::StatusOr<TaskResult> FakeTaskRunner::Run(const lft::v1::Task& task,
                                               TaskContext* context) {
  if (!options_.fail_with.empty())
    return absl::InternalError(options_.fail_with);
  if (options_.throw_bad_alloc) throw std::bad_alloc();
  if (task.has_extraction()) return Extract(task, context);
  if (task.has_training()) return Train(task, context);
  if (task.has_evaluation()) return Evaluate(task, context);
  return absl::InvalidArgumentError(
      absl::StrCat("task ", task.task_id(), " has no payload"));
}

absl::StatusOr<TaskResult> FakeTaskRunner::Extract(const lft::v1::Task& task,
                                                   TaskContext* context) {
  const auto& e = task.extraction();
  const uint64_t docs = e.end_document() > e.first_document()
                            ? e.end_document() - e.first_document()
                            : options_.documents_if_unknown;
  const absl::Time start = absl::Now();
  ProgressUpdate u;
  for (uint64_t d = 0; d < docs; ++d) {
    if (!Work(options_.ms_per_document, d, context)) {
      return absl::CancelledError(context->cancellation().reason());
    }
    u.documents_done = d + 1;
    u.tokens_done = u.documents_done * options_.tokens_per_document;
    u.tokens_per_second =
        u.tokens_done /
        std::max(1e-3, absl::ToDoubleSeconds(absl::Now() - start));
    context->ReportProgress(u);
  }
  TaskResult r;
  r.pairs_written = docs * options_.tokens_per_document /
                    std::max(1u, task.spec().sequence_length());
  return r;
}

absl::StatusOr<TaskResult> FakeTaskRunner::Train(const lft::v1::Task& task,
                                                 TaskContext* context) {
  const auto& t = task.training();
  std::string id;
  if (t.rank() == 0)
    id =
        absl::StrCat("fake-communicator-", task.job_id(), "-g", t.generation());
  absl::StatusOr<RendezvousResult> rv = context->Rendezvous(id);
  if (!rv.ok()) return rv.status();
  const uint64_t total = task.spec().training().max_steps() > 0
                             ? task.spec().training().max_steps()
                             : options_.steps_if_unknown;
  const uint32_t every =
      std::max(1u, task.spec().training().checkpoint_every_steps());
  uint64_t step = 0;
  const std::string& resume = t.resume_checkpoint();
  const size_t pos = resume.rfind("step-");
  if (pos != std::string::npos)
    (void)absl::SimpleAtoi(resume.substr(pos + 5), &step);
  ProgressUpdate u;
  std::string checkpoint = resume;
  while (step < total) {
    if (!Work(options_.ms_per_step, step, context)) {
      return absl::CancelledError(context->cancellation().reason());
    }
    ++step;
    if (step % every == 0 || step == total) {
      checkpoint = absl::StrCat("fake://", task.job_id(), "/step-", step);
    }
    u.steps_done = step;
    u.tokens_done = step * task.spec().training().global_batch_sequences() *
                    task.spec().sequence_length();
    u.loss = 1.0 / (1.0 + step);
    u.checkpoint = checkpoint;
    context->ReportProgress(u);
  }
  TaskResult r;
  r.checkpoint = checkpoint;
  return r;
}

absl::StatusOr<TaskResult> FakeTaskRunner::Evaluate(const lft::v1::Task& task,
                                                    TaskContext* context) {
  const uint64_t total = std::max(1u, task.spec().evaluation().max_sequences());
  ProgressUpdate u;
  for (uint64_t s = 0; s < total; ++s) {
    if (!Work(options_.ms_per_sequence, s, context)) {
      return absl::CancelledError(context->cancellation().reason());
    }
    u.sequences_done = s + 1;
    context->ReportProgress(u);
  }
  TaskResult r;
  r.checkpoint = absl::StrCat(task.evaluation().checkpoint(), "/eval.json");
  return r;
}

}  // namespace lft
