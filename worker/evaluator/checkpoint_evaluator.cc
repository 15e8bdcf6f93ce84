// Evaluation of one checkpoint on held-out text.
//
// Per batch of held-out sequences (ids [B, T], mask [B, T]) the teacher runs
// once, layer by layer: h_m = layers 0..m-1 of the embeddings, then h_r for
// every r in (m, max(n, m + J)] that a row needs, then layers up to L - 1,
// the final LayerNorm and the head: P = the teacher's logits [B, T, V]. Since
// every h_r is the teacher's own state on that pass, Tail(h_r, r) = P for
// each r, so P serves both as KL_x's reference Tail(x_ref, r) and as KL_PQ's
// teacher distribution (tests check this against GptNeoX::Forward). Then
// each row's replacement x_hat of the state entering layer r is pushed
// through Tail(x_hat, r) -> Q [B, T, V]:
//   skip-j      x_hat = h_m at r = m + j (layers m..m+j-1 skipped),
//               NMSE against h_{m+j}
//   regression  x_hat = Block(h_m, t = 0) at r = n, NMSE against h_n
//   linear      x_hat = [h_m, 1] W, W the least-squares fit of training
//               pairs, at r = n
//   flow        x_hat = k solver steps from h_m on the grid i/k, at r = n
// Beside the tail's KL_x every row with an x_hat gets two local measures:
// KL over softmax(hidden) of x_ref vs x_hat, and the logit lens
// KL(softmax Head(x_ref) || softmax Head(x_hat)), Head = final LN + LM head.
// The flow / regression layer runs in float32 whatever the teacher's dtype
// (its output is cast back for the tail). All sums are float64 over valid
// tokens (metrics.h), so every number is a token-weighted mean over the
// whole held-out set and perplexity is exp(mean NLL).
#include "worker/evaluator/checkpoint_evaluator.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/tensor_codec.h"
#include "latent-store/checkpoint_names.h"
#include "worker/model/eval_metrics.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/lr_schedule.h"
#include "worker/model/pair_batch.h"
#include "worker/model/torch_guard.h"
#include "worker/trainer/engine/flow_training_engine.h"
#include "worker/trainer/training_engine.h"

namespace lft {

StorePairSource::StorePairSource(PairStore* store, std::string job,
                                 uint64_t seed)
    : store_(store), job_(std::move(job)), seed_(seed) {}

StorePairSource::~StorePairSource() = default;

absl::StatusOr<bool> StorePairSource::Next(LatentPairRecord* pair) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (reader_ == nullptr) {
      ScanOptions so;
      so.shuffle = true;
      so.seed = seed_;
      so.epoch = epoch_;
      auto reader = store_->Scan(job_, so);
      if (!reader.ok()) {
        return Annotate(reader.status(),
                        absl::StrCat("reading training pairs of job ", job_));
      }
      reader_ = std::move(*reader);
    }
    auto more = reader_->Next(pair);
    if (!more.ok()) {
      return Annotate(more.status(),
                      absl::StrCat("reading training pairs of job ", job_));
    }
    if (*more) {
      any_ = true;
      return true;
    }
    reader_.reset();
    ++epoch_;
    if (!any_) return false;
  }
  return false;
}

namespace {

absl::Status CancelledStatus() {
  return absl::CancelledError("evaluation cancelled");
}

bool Cancelled(const EvaluationHooks& hooks) {
  return hooks.cancelled && hooks.cancelled();
}

absl::StatusOr<StepRule> RuleOf(const std::string& solver) {
  if (solver == "euler") return StepRule::kEuler;
  if (solver == "midpoint") return StepRule::kMidpoint;
  return absl::InvalidArgumentError(
      absl::StrCat("solver \"", solver, "\" is not euler or midpoint"));
}

// The next records->size() training pairs of `source` into *records (in
// place, so their buffers are reused); the valid tokens they hold, counted
// on the host.
absl::StatusOr<int64_t> NextRecords(TrainingPairSource* source,
                                    std::vector<LatentPairRecord>* records) {
  int64_t tokens = 0;
  for (LatentPairRecord& rec : *records) {
    LFT_ASSIGN_OR_RETURN(bool more, source->Next(&rec));
    if (!more) {
      return absl::FailedPreconditionError(
          "the regression baseline needs stored training pairs, and the job "
          "has none");
    }
    tokens += rec.tokens;
  }
  return tokens;
}

// The regression baseline (TrainRegressionBaseline): the engine of a
// METHOD_REGRESSION job, stepped as TrainerRunner steps it with one rank.
absl::StatusOr<FlowCheckpoint> TrainRegression(const GptNeoX& teacher,
                                               int64_t m, int64_t n,
                                               const RegressionOptions& o,
                                               TrainingPairSource* source,
                                               const EvaluationHooks& hooks) {
  const int64_t batch = std::max<int64_t>(1, o.batch_sequences);
  std::vector<LatentPairRecord> pairs(batch), next(batch);
  int64_t tokens = 0, pair_tokens = 0, next_tokens = 0;
  bool next_ready = false;
  std::unique_ptr<TrainingEngine> engine;
  std::vector<double> losses;
  for (int64_t step = 0; step < o.steps; ++step) {
    if (Cancelled(hooks)) return CancelledStatus();
    if (hooks.regression_progress) hooks.regression_progress(step, o.steps);
    if (next_ready) {
      pairs.swap(next);
      pair_tokens = next_tokens;
      next_ready = false;
    } else {
      LFT_ASSIGN_OR_RETURN(pair_tokens, NextRecords(source, &pairs));
    }
    if (engine == nullptr) {
      // After the first read, so that a job without pairs fails without
      // loading the teacher.
      if (o.job.teacher().path().empty()) {
        return absl::InvalidArgumentError(
            "the regression baseline needs the job's teacher directory "
            "(RegressionOptions::job.teacher.path)");
      }
      lft::v1::JobSpec spec = o.job;
      spec.mutable_block()->set_first_layer(static_cast<uint32_t>(m));
      spec.mutable_block()->set_end_layer(static_cast<uint32_t>(n));
      lft::v1::TrainingSpec* t = spec.mutable_training();
      t->set_method(lft::v1::METHOD_REGRESSION);
      t->set_weight_decay(o.weight_decay);
      t->set_seed(o.seed);
      auto made = NewFlowTrainingEngine(spec, teacher.options().device.str());
      if (!made.ok()) {
        return Annotate(made.status(), "training the regression baseline");
      }
      engine = std::move(*made);
    }
    const std::string where =
        absl::StrCat("training the regression baseline: step ", step);
    absl::Status s = engine->ComputeGradients(pairs, step);
    if (!s.ok()) return Annotate(s, where);
    // As TrainerRunner::PrefetchNextStep: the store read and the transfer
    // of the next step run while the device works on this one.
    if (engine->OverlapsInput() && step + 1 < o.steps) {
      LFT_ASSIGN_OR_RETURN(next_tokens, NextRecords(source, &next));
      engine->StageNextStep(next, step + 1);
      next_ready = true;
    }
    auto loss =
        engine->ApplyGradients(1.0, o.gradient_clip_norm,
                               WarmupCosineLr(o.learning_rate, o.min_lr_ratio,
                                              o.warmup_steps, o.steps, step));
    if (!loss.ok()) return Annotate(loss.status(), where);
    if (!std::isfinite(*loss)) {
      return absl::InternalError(
          absl::StrCat(where, ": the loss became ", *loss,
                       "; lower training.learning_rate or check the pairs"));
    }
    losses.push_back(*loss);
    tokens += pair_tokens;
  }
  if (engine == nullptr) {
    return absl::InvalidArgumentError(
        "the regression baseline needs at least one step");
  }
  TrainingPosition position;
  position.step = static_cast<uint64_t>(o.steps);
  position.tokens = static_cast<uint64_t>(tokens);
  position.losses = losses;
  auto blob = engine->SaveCheckpoint(position, 1);
  if (!blob.ok()) {
    return Annotate(blob.status(), "saving the regression baseline");
  }
  LFT_ASSIGN_OR_RETURN(FlowCheckpoint checkpoint, ParseFlowCheckpoint(*blob));
  // The blob writes losses as %.9g text; keep the engine's doubles.
  checkpoint.header.losses = std::move(losses);
  return checkpoint;
}

// Pairs per chunk of the linear fit's normal equations: 8 sequences of
// 2048 tokens at hidden 1024 are a 134 MB float64 [tokens, H + 1] matrix.
constexpr int64_t kLinearChunkSequences = 8;

// The linear baseline: W [H + 1, H] of the least-squares map [x0, 1] -> x1
// over the first `max_tokens` valid tokens of `source` (the last chunk's
// mask is cut so that exactly max_tokens count, or fewer if the source
// holds fewer: the source repeats its pairs epoch after epoch, and the fit
// stops at the first pair it has seen before, since a repeated pair only
// reweights the least-squares problem). Ridge 1e-6 of the mean diagonal
// of the centred Gram matrix, bias unpenalised (LinearMapFitter).
absl::StatusOr<torch::Tensor> FitLinear(const GptNeoX& teacher,
                                        int64_t max_tokens,
                                        TrainingPairSource* source,
                                        const EvaluationHooks& hooks,
                                        int64_t* tokens) {
  const int64_t hidden = teacher.config().hidden_size;
  const torch::Device device = teacher.options().device;
  LinearMapFitter fitter;
  std::set<std::tuple<uint32_t, uint64_t, uint32_t>> seen;  // pair keys
  bool wrapped = false;
  while (fitter.tokens() < max_tokens && !wrapped) {
    if (Cancelled(hooks)) return CancelledStatus();
    if (hooks.linear_progress) {
      hooks.linear_progress(fitter.tokens(), max_tokens);
    }
    std::vector<LatentPairRecord> records;
    LatentPairRecord rec;
    while (static_cast<int64_t>(records.size()) < kLinearChunkSequences) {
      LFT_ASSIGN_OR_RETURN(bool more, source->Next(&rec));
      if (!more) {
        if (seen.empty()) {
          return absl::FailedPreconditionError(
              "the linear baseline needs stored training pairs, and the job "
              "has none");
        }
        wrapped = true;
        break;
      }
      if (!seen.emplace(rec.shard, rec.sequence, rec.chunk).second) {
        wrapped = true;
        break;
      }
      records.push_back(std::move(rec));
    }
    if (records.empty()) break;
    PairBatch b;
    LFT_RETURN_IF_ERROR(AssemblePairBatch(records, hidden, &b));
    torch::Tensor mask = b.mask.to(torch::kFloat);
    const double remaining = static_cast<double>(max_tokens - fitter.tokens());
    torch::Tensor flat = mask.reshape({-1});
    mask = (flat * (flat.cumsum(0) <= remaining).to(torch::kFloat))
               .reshape(mask.sizes());
    fitter.Add(b.x0.to(device), b.x1.to(device), mask.to(device));
  }
  *tokens = fitter.tokens();
  if (*tokens == 0) {
    return absl::FailedPreconditionError(
        "the linear baseline's training pairs hold no valid token");
  }
  return fitter.Solve(1e-6);
}

// Held-out sequences [first, first + b) as ids [b, T] (int64) and mask
// [b, T] (float32) on the CPU. InvalidArgument for a sequence of another
// length or an id outside the vocabulary.
absl::Status HeldOutBatch(const HeldOutSet& heldout, int64_t first, int64_t b,
                          int64_t vocab, torch::Tensor* ids,
                          torch::Tensor* mask) {
  const int64_t T = heldout.sequence_length;
  *ids = torch::empty({b, T}, torch::kLong);
  *mask = torch::empty({b, T}, torch::kFloat);
  auto ia = ids->accessor<int64_t, 2>();
  auto ma = mask->accessor<float, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const PackedSequence& s = heldout.sequences[first + i];
    if (static_cast<int64_t>(s.tokens.size()) != T ||
        static_cast<int64_t>(s.mask.size()) != T) {
      return absl::InvalidArgumentError(absl::StrCat(
          "held-out sequence ", first + i, " is not ", T, " tokens long"));
    }
    for (int64_t j = 0; j < T; ++j) {
      if (s.tokens[j] < 0 || s.tokens[j] >= vocab) {
        return absl::InvalidArgumentError(absl::StrCat(
            "held-out token id ", s.tokens[j], " is outside the teacher's ",
            "vocabulary of ", vocab, " (a tokenizer of another model?)"));
      }
      ia[i][j] = s.tokens[j];
      ma[i][j] = s.mask[j];
    }
  }
  return absl::OkStatus();
}

struct RowState {
  EvaluationRow row;
  ReplacementMetrics metrics;
};

absl::StatusOr<EvaluationReport> Evaluate(const GptNeoX& teacher,
                                          const FlowCheckpoint& checkpoint,
                                          const HeldOutSet& heldout,
                                          const EvaluationPlan& plan,
                                          const RegressionOptions& reg_options,
                                          TrainingPairSource* pairs,
                                          const EvaluationHooks& hooks) {
  const FlowCheckpointHeader& h = checkpoint.header;
  const int64_t L = teacher.config().num_hidden_layers;
  const int64_t m = h.first_layer, n = h.end_layer;
  const bool regression_checkpoint = h.method == "regression";
  if (!regression_checkpoint && (plan.steps.empty() || plan.solvers.empty())) {
    return absl::InvalidArgumentError(
        "evaluation plan: list at least one k and one solver");
  }
  std::vector<std::pair<std::string, StepRule>> solvers;
  for (const std::string& s : plan.solvers) {
    LFT_ASSIGN_OR_RETURN(StepRule rule, RuleOf(s));
    solvers.emplace_back(s, rule);
  }
  for (int64_t k : plan.steps) {
    if (k < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("evaluation plan: k = ", k, " is below 1"));
    }
  }
  if (heldout.sequences.empty()) {
    return absl::InvalidArgumentError("no held-out sequences to score");
  }
  if (plan.linear_baseline && plan.linear_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("evaluation plan: linear_tokens = ", plan.linear_tokens,
                     " is below 1"));
  }
  const torch::Device device = teacher.options().device;
  const torch::ScalarType dtype = teacher.options().dtype;

  FlowLayerOptions fo;
  fo.device = device;
  fo.dtype = torch::kFloat;
  LFT_ASSIGN_OR_RETURN(FlowLayer layer,
                       RestoreFlowLayer(teacher, checkpoint, fo));
  layer->eval();

  EvaluationReport report;
  report.num_layers = L;
  report.first_layer = m;
  report.end_layer = n;
  report.method = h.method;
  report.checkpoint_step = h.step;
  report.checkpoint_tokens = h.tokens;
  report.losses = h.losses;
  report.sequence_length = heldout.sequence_length;
  report.heldout_sequences = static_cast<int64_t>(heldout.sequences.size());
  report.heldout_tokens = heldout.valid_tokens();

  // Skip rows: 1..N and n - m - 1, those with m + j <= L.
  std::set<int64_t> skips;
  for (int64_t j = 1; j <= plan.skip_baselines; ++j) skips.insert(j);
  if (n - m - 1 >= 1) skips.insert(n - m - 1);
  for (auto it = skips.begin(); it != skips.end();) {
    it = m + *it > L ? skips.erase(it) : std::next(it);
  }

  FlowLayer regression{nullptr};
  if (!regression_checkpoint && plan.regression_baseline && pairs != nullptr &&
      reg_options.steps > 0) {
    LFT_ASSIGN_OR_RETURN(
        FlowCheckpoint trained,
        TrainRegression(teacher, m, n, reg_options, pairs, hooks));
    LFT_ASSIGN_OR_RETURN(regression, RestoreFlowLayer(teacher, trained, fo));
    regression->eval();
    const std::vector<double>& losses = trained.header.losses;
    report.regression_steps = static_cast<int64_t>(losses.size());
    report.regression_final_loss = losses.empty() ? 0 : losses.back();
    report.regression_tokens = static_cast<int64_t>(trained.header.tokens);
  }
  torch::Tensor linear_map;  // [H + 1, H] float64, undefined: no linear row
  if (plan.linear_baseline && pairs != nullptr) {
    LFT_ASSIGN_OR_RETURN(linear_map,
                         FitLinear(teacher, plan.linear_tokens, pairs, hooks,
                                   &report.linear_tokens));
  }

  std::vector<RowState> rows;
  auto add_row = [&](EvaluationRow row) {
    rows.emplace_back();
    rows.back().row = std::move(row);
    return rows.size() - 1;
  };
  EvaluationRow teacher_row;
  teacher_row.method = "teacher";
  const size_t teacher_index = add_row(teacher_row);
  std::map<int64_t, size_t> skip_index;
  for (int64_t j : skips) {
    EvaluationRow r;
    r.method = "skip";
    r.skip = j;
    r.layers_removed = j;
    skip_index[j] = add_row(r);
  }
  constexpr size_t kNoRow = static_cast<size_t>(-1);
  size_t regression_index = kNoRow;
  if (regression_checkpoint || regression) {
    EvaluationRow r;
    r.method = "regression";
    r.layers_removed = n - m - 1;
    r.nfe = 1;
    regression_index = add_row(r);
  }
  size_t linear_index = kNoRow;
  if (linear_map.defined()) {
    EvaluationRow r;
    r.method = "linear";
    r.layers_removed = n - m;  // a matmul, no teacher or trained layer
    r.nfe = 0;
    linear_index = add_row(r);
  }
  std::vector<std::pair<size_t, std::pair<int64_t, StepRule>>> flow_rows;
  if (!regression_checkpoint) {
    for (const auto& [name, rule] : solvers) {
      for (int64_t k : plan.steps) {
        EvaluationRow r;
        r.method = h.method;
        r.solver = name;
        r.k = k;
        r.nfe = NetworkEvaluations(k, rule);
        r.layers_removed = n - m - 1;
        flow_rows.push_back({add_row(r), {k, rule}});
      }
    }
  }

  BlockSignalAccumulator signals;
  RecouplingSample recoupling(plan.recoupling_tokens);
  const int64_t deepest = std::max(n, skips.empty() ? n : m + *skips.rbegin());
  const int64_t vocab = teacher.config().vocab_size;
  const int64_t total = static_cast<int64_t>(heldout.sequences.size());
  const int64_t bs = std::max<int64_t>(1, plan.batch_sequences);
  int64_t tokens_done = 0;
  torch::NoGradGuard no_grad;
  if (hooks.progress) hooks.progress(0, 0);  // scoring starts
  for (int64_t first = 0; first < total; first += bs) {
    if (Cancelled(hooks)) return CancelledStatus();
    const int64_t b = std::min(bs, total - first);
    torch::Tensor ids, mask;
    LFT_RETURN_IF_ERROR(HeldOutBatch(heldout, first, b, vocab, &ids, &mask));
    torch::Tensor ids_d = ids.to(device);
    // The teacher's pass, keeping the states the rows need.
    std::map<int64_t, torch::Tensor> state;
    torch::Tensor cur = teacher.RunLayers(teacher.Embed(ids_d), 0, m);
    state[m] = cur;
    for (int64_t r = m; r < deepest; ++r) {
      cur = teacher.RunLayers(cur, r, r + 1);
      if (r + 1 == n || skips.count(r + 1 - m)) state[r + 1] = cur;
    }
    if (Cancelled(hooks)) return CancelledStatus();
    const torch::Tensor p = teacher.Head(teacher.RunLayers(cur, deepest, L));
    const torch::Tensor& h_m = state[m];
    const torch::Tensor& h_n = state[n];
    rows[teacher_index].metrics.Add(torch::Tensor(), torch::Tensor(), p, p, p,
                                    ids, mask);
    signals.Add(h_m, h_n, mask);
    recoupling.Add(h_m, h_n, mask);

    auto tail = [&](const torch::Tensor& x,
                    int64_t r) -> absl::StatusOr<torch::Tensor> {
      if (Cancelled(hooks)) return CancelledStatus();
      return teacher.Tail(x.to(dtype), r);
    };
    // The logit lens of the teacher's own states, once per r.
    std::map<int64_t, torch::Tensor> lens_ref;
    auto add_local = [&](size_t index, const torch::Tensor& x_hat, int64_t r) {
      auto it = lens_ref.find(r);
      if (it == lens_ref.end()) {
        it = lens_ref.emplace(r, teacher.Head(state[r])).first;
      }
      rows[index].metrics.AddLocal(
          x_hat, state[r], teacher.Head(x_hat.to(dtype)), it->second, mask);
    };
    for (const auto& [j, index] : skip_index) {
      LFT_ASSIGN_OR_RETURN(torch::Tensor q, tail(h_m, m + j));
      rows[index].metrics.Add(h_m, state[m + j], p, p, q, ids, mask);
      add_local(index, h_m, m + j);
    }
    const torch::Tensor x0 = h_m.to(torch::kFloat);
    const torch::Tensor t0 = torch::zeros({b}, x0.options());
    if (regression_index != kNoRow) {
      FlowLayer& reg = regression_checkpoint ? layer : regression;
      const torch::Tensor x1_hat = reg->Block(x0, t0);
      LFT_ASSIGN_OR_RETURN(torch::Tensor q, tail(x1_hat, n));
      rows[regression_index].metrics.Add(x1_hat, h_n, p, p, q, ids, mask);
      add_local(regression_index, x1_hat, n);
    }
    if (linear_index != kNoRow) {
      const torch::Tensor x1_hat = LinearMapFitter::Apply(linear_map, x0);
      LFT_ASSIGN_OR_RETURN(torch::Tensor q, tail(x1_hat, n));
      rows[linear_index].metrics.Add(x1_hat, h_n, p, p, q, ids, mask);
      add_local(linear_index, x1_hat, n);
    }
    VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
      return layer->Velocity(x, t);
    };
    for (const auto& [index, setting] : flow_rows) {
      if (Cancelled(hooks)) return CancelledStatus();
      const torch::Tensor x1_hat =
          Integrate(u, x0, UniformGrid(setting.first), setting.second);
      LFT_ASSIGN_OR_RETURN(torch::Tensor q, tail(x1_hat, n));
      rows[index].metrics.Add(x1_hat, h_n, p, p, q, ids, mask);
      add_local(index, x1_hat, n);
    }
    tokens_done += static_cast<int64_t>(mask.sum().item<double>());
    if (hooks.progress) hooks.progress(first + b, tokens_done);
  }

  for (RowState& r : rows) {
    r.row.nmse = r.metrics.nmse();
    r.row.kl_x = r.metrics.kl_x();
    r.row.kl_pq = r.metrics.kl_pq();
    r.row.ppl = r.metrics.ppl();
    r.row.kl_x_softmax = r.metrics.kl_x_softmax();
    r.row.kl_x_lens = r.metrics.kl_x_lens();
    report.rows.push_back(r.row);
  }
  report.teacher_ppl = rows[teacher_index].metrics.ppl();
  report.predicted_tokens = rows[teacher_index].metrics.perplexity().tokens();
  report.angular_distance = signals.Value().angular_distance;
  report.block_influence = signals.Value().block_influence;
  report.recoupling_tokens = recoupling.tokens();
  if (recoupling.tokens() > 0) {
    LFT_ASSIGN_OR_RETURN(report.recoupling_ratio, recoupling.Ratio());
  }
  return report;
}

// The held-out block pairs of one batch, on the teacher's device and dtype.
struct BlockPairBatch {
  torch::Tensor x0, x1, mask;
};

absl::StatusOr<std::vector<CurvePoint>> Curve(
    const GptNeoX& teacher, int64_t m, int64_t n, const HeldOutSet& heldout,
    PairStore* store, const std::string& job, const CurvePlan& plan,
    const EvaluationHooks& hooks) {
  if (plan.k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("training curve: k = ", plan.k, " is below 1"));
  }
  LFT_ASSIGN_OR_RETURN(StepRule rule, RuleOf(plan.solver));
  if (heldout.sequences.empty()) {
    return absl::InvalidArgumentError("no held-out sequences to score");
  }
  const int64_t L = teacher.config().num_hidden_layers;
  if (m < 0 || n <= m || n > L) {
    return absl::InvalidArgumentError(
        absl::StrCat("training curve: block [", m, ", ", n,
                     ") is not inside the teacher's ", L, " layers"));
  }
  auto listed = store->ListCheckpoints(job);
  if (!listed.ok()) {
    return Annotate(listed.status(),
                    absl::StrCat("listing the checkpoints of job ", job));
  }
  std::vector<std::pair<uint64_t, std::string>> names;  // (step, name)
  for (const CheckpointInfo& info : *listed) {
    if (auto step = TrainingCheckpointStep(info.name)) {
      names.emplace_back(*step, info.name);
    }
  }
  std::sort(names.begin(), names.end());
  std::vector<CurvePoint> curve;
  if (names.empty()) return curve;

  torch::NoGradGuard no_grad;
  const torch::Device device = teacher.options().device;
  const int64_t vocab = teacher.config().vocab_size;
  const int64_t total = static_cast<int64_t>(heldout.sequences.size());
  const int64_t bs = std::max<int64_t>(1, plan.batch_sequences);
  std::vector<BlockPairBatch> pairs;
  for (int64_t first = 0; first < total; first += bs) {
    if (Cancelled(hooks)) return CancelledStatus();
    const int64_t b = std::min(bs, total - first);
    torch::Tensor ids, mask;
    LFT_RETURN_IF_ERROR(HeldOutBatch(heldout, first, b, vocab, &ids, &mask));
    BlockPairBatch p;
    p.x0 = teacher.RunLayers(teacher.Embed(ids.to(device)), 0, m);
    p.x1 = teacher.RunLayers(p.x0, m, n);
    p.mask = mask;
    pairs.push_back(std::move(p));
  }

  FlowLayerOptions fo;
  fo.device = device;
  fo.dtype = torch::kFloat;
  const int64_t count = static_cast<int64_t>(names.size());
  for (int64_t i = 0; i < count; ++i) {
    if (hooks.curve_progress) hooks.curve_progress(i, count);
    if (Cancelled(hooks)) return CancelledStatus();
    const std::string& name = names[i].second;
    const std::string where =
        absl::StrCat("training curve: checkpoint \"", name, "\" of job ", job);
    auto bytes = store->GetCheckpoint(job, name);
    if (!bytes.ok()) return Annotate(bytes.status(), where);
    auto checkpoint = ParseFlowCheckpoint(*bytes);
    if (!checkpoint.ok()) return Annotate(checkpoint.status(), where);
    const FlowCheckpointHeader& h = checkpoint->header;
    if (h.first_layer != m || h.end_layer != n) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, " replaces block [", h.first_layer, ", ",
                       h.end_layer, "), not [", m, ", ", n, ")"));
    }
    auto restored = RestoreFlowLayer(teacher, *checkpoint, fo);
    if (!restored.ok()) return Annotate(restored.status(), where);
    FlowLayer layer = std::move(*restored);
    layer->eval();
    const bool block_only = h.method == "regression";
    VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
      return layer->Velocity(x, t);
    };
    NmseAccumulator nmse, nmse_k1;
    KlAccumulator kl_softmax;
    for (const BlockPairBatch& p : pairs) {
      if (Cancelled(hooks)) return CancelledStatus();
      const torch::Tensor x0 = p.x0.to(torch::kFloat);
      torch::Tensor x_k, x_1;
      if (block_only) {
        x_k = layer->Block(x0, torch::zeros({x0.size(0)}, x0.options()));
        x_1 = x_k;
      } else {
        x_k = Integrate(u, x0, UniformGrid(plan.k), rule);
        x_1 = plan.k == 1 ? x_k : Integrate(u, x0, UniformGrid(1), rule);
      }
      nmse.Add(x_k, p.x1, p.mask);
      nmse_k1.Add(x_1, p.x1, p.mask);
      kl_softmax.Add(p.x1, x_k, p.mask);
    }
    CurvePoint c;
    c.checkpoint = name;
    c.step = h.step;
    c.tokens = h.tokens;
    c.k = block_only ? 1 : plan.k;
    c.solver = block_only ? "" : plan.solver;
    c.nmse = nmse.Value();
    c.nmse_k1 = nmse_k1.Value();
    c.kl_x_softmax = kl_softmax.Value();
    curve.push_back(std::move(c));
  }
  if (hooks.curve_progress) hooks.curve_progress(count, count);
  return curve;
}

}  // namespace

absl::StatusOr<EvaluationReport> EvaluateCheckpoint(
    const GptNeoX& teacher, const FlowCheckpoint& checkpoint,
    const HeldOutSet& heldout, const EvaluationPlan& plan,
    const RegressionOptions& regression, TrainingPairSource* pairs,
    const EvaluationHooks& hooks) {
  return GuardTorch("evaluating checkpoint",
                    [&]() -> absl::StatusOr<EvaluationReport> {
                      return Evaluate(teacher, checkpoint, heldout, plan,
                                      regression, pairs, hooks);
                    });
}

absl::StatusOr<FlowCheckpoint> TrainRegressionBaseline(
    const GptNeoX& teacher, int64_t first_layer, int64_t end_layer,
    const RegressionOptions& options, TrainingPairSource* pairs,
    const EvaluationHooks& hooks) {
  return GuardTorch("training the regression baseline",
                    [&]() -> absl::StatusOr<FlowCheckpoint> {
                      return TrainRegression(teacher, first_layer, end_layer,
                                             options, pairs, hooks);
                    });
}

absl::StatusOr<std::vector<CurvePoint>> ScoreCheckpointCurve(
    const GptNeoX& teacher, int64_t first_layer, int64_t end_layer,
    const HeldOutSet& heldout, PairStore* store, const std::string& job,
    const CurvePlan& plan, const EvaluationHooks& hooks) {
  return GuardTorch("scoring the training curve",
                    [&]() -> absl::StatusOr<std::vector<CurvePoint>> {
                      return Curve(teacher, first_layer, end_layer, heldout,
                                   store, job, plan, hooks);
                    });
}

}  // namespace lft
