// Evaluation task: store checkpoint + held-out text -> report files in the
// store. See evaluation_runner.h.
#include "worker/evaluator/evaluation_runner.h"

#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/job_spec.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/remote_pair_store.h"
#include "latent-store/retrying_pair_store.h"
#include "worker/evaluator/checkpoint_evaluator.h"
#include "worker/evaluator/evaluation_report.h"
#include "worker/evaluator/heldout.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/teacher_loader.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

// The plan and regression settings of a job spec (defaults applied by the
// coordinator; zero values here fall back to the structs' defaults).
absl::StatusOr<EvaluationPlan> PlanOf(const lft::v1::JobSpec& spec,
                                      int64_t batch_sequences) {
  const lft::v1::EvaluationSpec& e = spec.evaluation();
  EvaluationPlan plan;
  if (e.steps_size() > 0) plan.steps.assign(e.steps().begin(), e.steps().end());
  if (e.solvers_size() > 0) {
    plan.solvers.clear();
    for (int s : e.solvers()) {
      if (s == lft::v1::SOLVER_EULER) {
        plan.solvers.push_back("euler");
      } else if (s == lft::v1::SOLVER_MIDPOINT) {
        plan.solvers.push_back("midpoint");
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "evaluation.solvers: ", s, " is not euler or midpoint"));
      }
    }
  }
  plan.skip_baselines = e.skip_baselines();
  plan.regression_baseline =
      e.has_regression_baseline() ? e.regression_baseline() : true;
  plan.linear_baseline = e.linear_baseline();
  plan.linear_tokens = static_cast<int64_t>(
      e.linear_tokens() > 0 ? e.linear_tokens() : kDefaultLinearTokens);
  plan.batch_sequences = batch_sequences;
  return plan;
}

RegressionOptions RegressionOf(const lft::v1::JobSpec& spec,
                               const EvaluationRunnerOptions& o) {
  const lft::v1::TrainingSpec& t = spec.training();
  RegressionOptions r;
  if (t.learning_rate() > 0) r.learning_rate = t.learning_rate();
  r.weight_decay = t.weight_decay();
  r.gradient_clip_norm = t.gradient_clip_norm();
  const lft::v1::EvaluationSpec& e = spec.evaluation();
  if (e.regression_batch_sequences() > 0) {
    r.batch_sequences = e.regression_batch_sequences();
  } else if (t.global_batch_sequences() > 0) {
    r.batch_sequences = t.global_batch_sequences();
  }
  r.seed = t.seed();
  r.job = spec;
  if (e.regression_steps() > 0) {
    // Asked for explicitly (an equal-budget study): not capped.
    r.steps = e.regression_steps();
    r.warmup_steps = std::min<int64_t>(t.warmup_steps(), r.steps);
    return r;
  }
  int64_t steps = o.regression_steps;
  if (steps < 0) {
    if (t.max_steps() > 0) {
      steps = static_cast<int64_t>(t.max_steps());
    } else {
      const uint64_t per_step = static_cast<uint64_t>(r.batch_sequences) *
                                std::max<uint32_t>(1, spec.sequence_length());
      steps = static_cast<int64_t>(t.max_tokens() / per_step);
    }
  }
  r.steps = std::min<int64_t>(std::max<int64_t>(steps, 0),
                              std::max<int64_t>(o.max_regression_steps, 0));
  r.warmup_steps = std::min<int64_t>(t.warmup_steps(), r.steps);
  return r;
}

void ExportMetrics(MetricsRegistry* metrics, const std::string& job,
                   const EvaluationReport& report) {
  for (const EvaluationRow& r : report.rows) {
    const MetricLabels labels = {
        {"job", job},
        {"role", "evaluator"},
        {"method",
         r.method == "skip" ? absl::StrCat("skip-", r.skip) : r.method},
        {"k", absl::StrCat(r.k)},
        {"solver", r.solver.empty() ? "none" : r.solver}};
    metrics
        ->Gauge("lft_eval_kl",
                "KL(P||Q) of the teacher against the compressed model on "
                "held-out text",
                labels)
        .Set(r.kl_pq);
    metrics
        ->Gauge("lft_eval_kl_x",
                "KL of the teacher's tail fed x1 against fed x1_hat", labels)
        .Set(r.kl_x);
    metrics
        ->Gauge("lft_eval_nmse",
                "Normalised squared error of the replaced block's output",
                labels)
        .Set(r.nmse);
    metrics->Gauge("lft_eval_perplexity", "Held-out perplexity", labels)
        .Set(r.ppl);
  }
}

}  // namespace

EvaluationRunner::EvaluationRunner(EvaluationRunnerOptions options)
    : options_(std::move(options)),
      owned_stores_(options_.stores != nullptr
                        ? nullptr
                        : std::make_unique<PairStorePool>(
                              options_.store_db, RemotePairStoreOptions())),
      stores_(options_.stores != nullptr ? options_.stores
                                         : owned_stores_.get()),
      teachers_(options_.device) {}

EvaluationRunner::~EvaluationRunner() = default;

absl::StatusOr<TaskResult> EvaluationRunner::Run(const lft::v1::Task& task,
                                                 TaskContext* context) {
  if (!task.has_evaluation()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_id(), " is not an evaluation task"));
  }
  const lft::v1::JobSpec& spec = task.spec();
  const std::string& job = task.job_id();
  const std::string& name = task.evaluation().checkpoint();
  const std::string where =
      absl::StrCat("job ", job, " checkpoint \"", name, "\"");
  const auto start = std::chrono::steady_clock::now();
  const CancellationToken& token = context->cancellation();
  auto cancelled_status = [&]() {
    return absl::CancelledError(
        absl::StrCat(where, ": cancelled: ", token.reason()));
  };

  LFT_ASSIGN_OR_RETURN(EvaluationPlan plan,
                       PlanOf(spec, options_.batch_sequences));
  const bool bf16 =
      TeacherUsesBf16(options_.device, spec.teacher().compute_dtype());
  LFT_ASSIGN_OR_RETURN(LoadedTeacher * teacher,
                       teachers_.Get(spec.teacher().path(), bf16));
  LFT_ASSIGN_OR_RETURN(PairStore * pooled, stores_->Get(task.store_address()));
  // A store that is down costs this task a wait, not a failed attempt.
  StoreRetryOptions retry;
  retry.give_up_after = options_.store_unavailable_wait;
  retry.description = absl::StrCat("latent store ", task.store_address());
  retry.sleep = [&token](absl::Duration d) { return token.WaitFor(d); };
  RetryingPairStore retrying_store(pooled, retry);
  PairStore* const store = &retrying_store;

  auto bytes = store->GetCheckpoint(job, name);
  if (!bytes.ok()) {
    return Annotate(bytes.status(),
                    absl::StrCat("reading checkpoint \"", name, "\" of job ",
                                 job, " from the store"));
  }
  auto checkpoint = GuardTorch("parsing checkpoint",
                               [&]() { return ParseFlowCheckpoint(*bytes); });
  if (!checkpoint.ok()) return Annotate(checkpoint.status(), where);
  const int64_t m = spec.block().first_layer();
  const int64_t n = spec.block().end_layer();
  if (checkpoint->header.first_layer != m ||
      checkpoint->header.end_layer != n) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": the checkpoint replaces block [",
        checkpoint->header.first_layer, ", ", checkpoint->header.end_layer,
        ") but the job's spec replaces [", m, ", ", n,
        ") (a checkpoint of another job?)"));
  }

  HeldOutOptions ho;
  ho.sequence_length = spec.sequence_length();
  ho.max_sequences = spec.evaluation().max_sequences() > 0
                         ? spec.evaluation().max_sequences()
                         : 64;
  ho.eos_id = teacher->eos_id;
  ho.pad_id = teacher->eos_id;  // masked; any id inside the vocabulary
  ho.error_budget = static_cast<int64_t>(spec.corpus().error_budget());
  const std::vector<std::string> files(
      spec.evaluation().heldout_paths().begin(),
      spec.evaluation().heldout_paths().end());
  auto heldout = ReadHeldOut(files, teacher->tokenizer.get(), ho,
                             [&]() { return token.cancelled(); });
  if (!heldout.ok()) {
    if (token.cancelled()) return cancelled_status();
    return Annotate(heldout.status(), where);
  }

  const RegressionOptions reg = RegressionOf(spec, options_);
  std::unique_ptr<StorePairSource> pairs;
  if ((plan.regression_baseline && reg.steps > 0) || plan.linear_baseline) {
    pairs = std::make_unique<StorePairSource>(store, job, reg.seed);
  }

  ProgressUpdate progress;
  std::atomic<bool> stop{false};
  prometheus::Counter* sequences_metric = nullptr;
  if (options_.metrics != nullptr) {
    sequences_metric = &options_.metrics->Counter(
        "lft_eval_sequences_total", "Held-out sequences scored",
        {{"job", job}, {"role", "evaluator"}});
  }
  EvaluationHooks hooks;
  hooks.cancelled = [&]() { return stop.load() || token.cancelled(); };
  hooks.progress = [&](int64_t sequences, int64_t tokens) {
    if (sequences_metric != nullptr) {
      sequences_metric->Increment(
          static_cast<double>(sequences - progress.sequences_done));
    }
    progress.sequences_done = static_cast<uint64_t>(sequences);
    progress.tokens_done = static_cast<uint64_t>(tokens);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    progress.tokens_per_second = secs > 0 ? tokens / secs : 0;
    progress.stage = "scoring";
    progress.stage_unit = "sequences";
    progress.stage_units_done = static_cast<uint64_t>(sequences);
    progress.stage_units_total = heldout->sequences.size();
    if (!context->ReportProgress(progress)) stop = true;
  };
  auto stage = [&](const char* stage_name, const char* unit, int64_t done,
                   int64_t total) {
    progress.stage = stage_name;
    progress.stage_unit = unit;
    progress.stage_units_done = static_cast<uint64_t>(done);
    progress.stage_units_total = static_cast<uint64_t>(total);
    if (!context->ReportProgress(progress)) stop = true;
  };
  hooks.regression_progress = [&](int64_t steps, int64_t total) {
    stage("training the regression baseline", "steps", steps, total);
  };
  hooks.linear_progress = [&](int64_t tokens, int64_t total) {
    stage("fitting the linear baseline", "tokens", tokens, total);
  };
  hooks.curve_progress = [&](int64_t checkpoints, int64_t total) {
    stage("scoring the training curve", "checkpoints", checkpoints, total);
  };
  auto report = EvaluateCheckpoint(*teacher->model, *checkpoint, *heldout, plan,
                                   reg, pairs.get(), hooks);
  if (!report.ok()) {
    if (absl::IsCancelled(report.status())) return cancelled_status();
    return Annotate(report.status(), where);
  }
  report->job = job;
  report->checkpoint = name;
  report->teacher = spec.teacher().path();
  report->heldout_files = files;
  if (spec.evaluation().score_checkpoint_curve()) {
    CurvePlan cp;
    const lft::v1::TrainingSpec& t = spec.training();
    if (t.flow_walking_steps() > 0) cp.k = t.flow_walking_steps();
    cp.solver = t.solver() == lft::v1::SOLVER_EULER ? "euler" : "midpoint";
    cp.batch_sequences = options_.batch_sequences;
    auto curve = ScoreCheckpointCurve(*teacher->model, m, n, *heldout, store,
                                      job, cp, hooks);
    if (!curve.ok()) {
      if (absl::IsCancelled(curve.status())) return cancelled_status();
      return Annotate(curve.status(), where);
    }
    report->curve = std::move(*curve);
  }

  std::vector<std::pair<std::string, std::string>> outputs = {
      {kReportJsonName, report->ToJson()},
      {kReportMarkdownName, report->ToMarkdown()}};
  if (!report->losses.empty()) {
    LFT_ASSIGN_OR_RETURN(std::string png, RenderLossPlot(*report));
    outputs.emplace_back(kLossPlotName, std::move(png));
  }
  if (report->BestFlowRow() != nullptr) {
    LFT_ASSIGN_OR_RETURN(std::string png, RenderKlPlot(*report));
    outputs.emplace_back(kKlPlotName, std::move(png));
  }
  if (!report->curve.empty()) {
    LFT_ASSIGN_OR_RETURN(std::string png, RenderCurvePlot(*report));
    outputs.emplace_back(kCurvePlotName, std::move(png));
  }
  if (options_.pause_before_outputs > absl::ZeroDuration()) {
    LogInfo("pausing before writing the results (tests)", {{"job", job}});
    if (token.WaitFor(options_.pause_before_outputs)) return cancelled_status();
  }
  for (const auto& [file, data] : outputs) {
    if (token.cancelled()) return cancelled_status();
    auto put = store->PutCheckpoint(job, file, data, "");
    if (!put.ok()) {
      return Annotate(put.status(),
                      absl::StrCat(where, ": writing ", file, " to the store"));
    }
  }
  if (options_.metrics != nullptr) {
    ExportMetrics(options_.metrics, job, *report);
  }
  context->ReportProgress(progress);
  const EvaluationRow* best = report->BestFlowRow();
  LogInfo("checkpoint evaluated",
          {{"job", job},
           {"checkpoint", name},
           {"sequences", std::to_string(report->heldout_sequences)},
           {"teacher_ppl", std::to_string(report->teacher_ppl)},
           {"best", best ? best->Label() : "-"},
           {"best_kl_pq", best ? std::to_string(best->kl_pq) : "-"}});
  TaskResult result;
  result.checkpoint = kReportJsonName;
  return result;
}

}  // namespace lft
