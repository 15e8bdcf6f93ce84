// EvaluationRunner: the evaluator worker's engine (issue item 4). For one
// EvaluationTask it loads the job's teacher and tokenizer, reads the
// checkpoint named by the task from the job's store, packs the held-out
// text (spec.evaluation.heldout_paths at spec.sequence_length, the first
// spec.evaluation.max_sequences sequences), trains the regression baseline
// and fits the linear one on the job's stored pairs if the plan asks for
// them, scores everything with EvaluateCheckpoint (and, with
// evaluation.score_checkpoint_curve, every stored step-N checkpoint with
// ScoreCheckpointCurve) and writes the results next to the checkpoint in
// the store:
//   report.json   EvaluationReport::ToJson (docs/store.md)
//   report.md     the table in the layout of the paper's Table 1 + verdict
//   loss.png      the checkpoint's training loss per step
//   kl_vs_k.png   KL_PQ and KL_x against k per solver, baselines as levels
//   nmse_vs_tokens.png  with evaluation.score_checkpoint_curve: held-out
//                 NMSE of every stored step-N checkpoint against its
//                 training tokens (ScoreCheckpointCurve)
// TaskResult.checkpoint is "report.json".
//
// No torch type appears in this header; the .cc catches torch exceptions.
#ifndef LFT_WORKER_EVALUATOR_EVALUATION_RUNNER_H_
#define LFT_WORKER_EVALUATOR_EVALUATION_RUNNER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/prometheus_metrics.h"
#include "latent-store/pair_store_pool.h"
#include "worker/agent/task_runner.h"
#include "worker/model/teacher_loader.h"

namespace lft {

struct EvaluationRunnerOptions {
  // "cpu" or "cuda" (or "cuda:N").
  std::string device = "cpu";
  // Directory of the embedded LatentStore used when a task's store_address
  // is empty; ignored when `stores` is set. Empty and no `stores`: such
  // tasks fail with FailedPrecondition.
  std::string store_db;
  // Shared store connections (see TeacherRunnerOptions). Must outlive the
  // runner.
  PairStorePool* stores = nullptr;
  // How long a store call may keep failing with Unavailable (store down or
  // restarting; retried with backoff, latent-store/retrying_pair_store.h)
  // before the task fails naming the store.
  absl::Duration store_unavailable_wait = absl::Minutes(5);
  // Tests only: an interruptible pause before the results are written, so
  // that a test can stop the store in the middle of an evaluation.
  absl::Duration pause_before_outputs = absl::ZeroDuration();
  // Held-out sequences per teacher pass.
  int64_t batch_sequences = 4;
  // Steps of the regression baseline when the spec's
  // evaluation.regression_steps is 0: < 0 takes the job's training budget
  // (training.max_steps, or max_tokens / (regression batch * sequence
  // length)), capped by max_regression_steps so a worker's evaluation stays
  // bounded. A spec's evaluation.regression_steps > 0 is used as is.
  int64_t regression_steps = -1;
  int64_t max_regression_steps = 2000;
  // Optional gauges lft_eval_kl (KL_PQ), lft_eval_kl_x, lft_eval_nmse and
  // lft_eval_perplexity labelled {job, role="evaluator", method, k, solver},
  // and counter lft_eval_sequences_total {job, role}. Must outlive the runner.
  MetricsRegistry* metrics = nullptr;
};

class EvaluationRunner : public TaskRunner {
 public:
  explicit EvaluationRunner(EvaluationRunnerOptions options);
  ~EvaluationRunner() override;

  // Runs one evaluation task (other payloads: InvalidArgument). Returns
  // checkpoint = "report.json". Errors: those of loading the teacher (naming
  // the directory); NotFound naming the checkpoint and job if the store has
  // no such checkpoint; InvalidArgument if it is not a flow checkpoint, is
  // for another block than the spec's, or does not fit the teacher;
  // NotFound / reader errors naming a held-out file; FailedPrecondition if
  // the regression or linear baseline is planned and the job has no stored
  // pairs; with evaluation.score_checkpoint_curve, ScoreCheckpointCurve's
  // errors (a stored step-N checkpoint of another block, naming it);
  // Cancelled when the task's cancellation token is set (polled between
  // documents, teacher tails and training steps).
  absl::StatusOr<TaskResult> Run(const lft::v1::Task& task,
                                 TaskContext* context) override;

 private:
  const EvaluationRunnerOptions options_;
  // options_.stores, or a pool of its own over options_.store_db.
  std::unique_ptr<PairStorePool> owned_stores_;
  PairStorePool* const stores_;
  TeacherCache teachers_;
};

}  // namespace lft

#endif  // LFT_WORKER_EVALUATOR_EVALUATION_RUNNER_H_
