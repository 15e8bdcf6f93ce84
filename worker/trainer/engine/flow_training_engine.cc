// What it computes, per step and rank: x0, x1 [b, T, H] decoded from the
// rank's pairs; loss = the job's flow loss (model core, flow_layer.h) with
// per-pair times drawn from (seed, step, pair key), or the regression MSE
// of Block(x0, t = 0) against x1; backward; the gradients of all parameters
// copied into one flat float32 buffer [P + 1] whose last element is the
// loss, so a single all-reduce averages both. The optimizer is AdamW on
// flat buffers (worker/model/adamw.h); clipping follows torch's
// clip_grad_norm_.
//
// On CUDA: parameters stay float32 (the optimizer's master copy); once per
// step they are cast to bf16 (FlowEvalWeights) and every network
// evaluation runs in bf16, while the ODE state x and the loss stay float32.
// The fused ops add every evaluation's weight gradients into one bf16
// buffer (ScopedWeightGradSinks, fused_ops.h), which becomes the float32
// gradients in one cast.
// Steps of one shape (same batch and length, no padding) are recorded as a
// CUDA graph on the second such step and replayed after (cuda_step_graph.h):
// the host then spends microseconds per step instead of tens of
// milliseconds. LFT_TRAINER_CUDA_GRAPH=0 keeps every step eager (debugging).
// With a recorded graph, ApplyGradients queues the optimizer step, then the
// staged next step's replay, and only then waits for this step's loss
// (DeviceScalarReadback): the GPU never drains between steps, and
// ComputeGradients of that next step finds its work already queued. The
// early replay reads the weights after the update (stream order) and
// writes only the gradient buffer, which the next step overwrites anyway,
// so a step whose pairs differ from the staged ones (or one that never
// comes) costs one replay and changes no result.
#include "worker/trainer/engine/flow_training_engine.h"

#include <ATen/record_function.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/split_mix64.h"
#include "common/base/status.h"
#include "common/tensor/tensor_codec.h"
#include "worker/kernels/fused_ops.h"
#include "worker/model/adamw.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_flops.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/pair_batch.h"
#include "worker/model/torch_guard.h"
#include "worker/trainer/engine/cuda_step_graph.h"
#include "worker/trainer/engine/device_scalar_readback.h"

namespace lft {
namespace {

// LFT_TRAINER_CUDA_GRAPH: unset or 1 = record steps where possible, eager
// where recording fails; 0 = always eager; require = a failed recording
// fails the step (tests).
enum class GraphMode { kOff, kOn, kRequire };
GraphMode CudaGraphMode() {
  const char* v = std::getenv("LFT_TRAINER_CUDA_GRAPH");
  if (v == nullptr) return GraphMode::kOn;
  const std::string s(v);
  return s == "0"         ? GraphMode::kOff
         : s == "require" ? GraphMode::kRequire
                          : GraphMode::kOn;
}

std::string MethodName(lft::v1::Method m) {
  switch (m) {
    case lft::v1::METHOD_SFM:
      return "sfm";
    case lft::v1::METHOD_FW:
      return "fw";
    case lft::v1::METHOD_HYBRID:
      return "hybrid";
    case lft::v1::METHOD_REGRESSION:
      return "regression";
    default:
      return "";
  }
}

class FlowTrainingEngine : public TrainingEngine {
 public:
  FlowTrainingEngine(const lft::v1::JobSpec& spec, torch::Device device,
                     FlowLayer layer)
      : spec_(spec),
        device_(device),
        method_(MethodName(spec.training().method())),
        layer_(std::move(layer)),
        adam_(
            {AdamWGroup{layer_->parameters(), spec.training().weight_decay()}}),
        graph_mode_(device.is_cuda() ? CudaGraphMode() : GraphMode::kOff) {
    loss_.method = spec.training().method() == lft::v1::METHOD_SFM
                       ? FlowMethod::kSfm
                   : spec.training().method() == lft::v1::METHOD_HYBRID
                       ? FlowMethod::kHybrid
                       : FlowMethod::kFw;
    loss_.fw_steps = spec.training().flow_walking_steps();
    loss_.rule = spec.training().solver() == lft::v1::SOLVER_EULER
                     ? StepRule::kEuler
                     : StepRule::kMidpoint;
    loss_.alpha = spec.training().hybrid_alpha();
    for (const auto& p : layer_->named_parameters()) {
      names_.push_back(p.key());
    }
    auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device_);
    flat_ = torch::zeros({adam_.size() + 1}, f32);
    for (size_t i = 0; i < adam_.params().size(); ++i) {
      param_index_[adam_.params()[i].unsafeGetTensorImpl()] = i;
      param_numels_.push_back(adam_.params()[i].numel());
    }
    if (device_.is_cuda()) {
      // The step's bf16 weights, one cast of the optimizer's buffer, and
      // their gradients, summed over the step's evaluations
      // (ForwardBackward).
      step_weights_ = torch::empty({adam_.size()}, f32.dtype(torch::kBFloat16));
      weight_grads_ = torch::empty_like(step_weights_);
    }
  }

  absl::Status ComputeGradients(absl::Span<const LatentPairRecord> pairs,
                                uint64_t step) override {
    if (pairs.empty()) {
      return absl::InvalidArgumentError("a training step needs pairs");
    }
    const int64_t hidden = layer_->shape().hidden;
    // Named ranges for a profiler's trace (free when none records).
    RECORD_USER_SCOPE("lft::compute_gradients");
    return GuardTorch("training step", [&]() -> absl::Status {
      if (ahead_.step == step && ahead_.Holds(pairs)) {
        // Queued by the last ApplyGradients behind its optimizer step.
        ahead_ = StagedStep();
        staged_ = StagedStep();
        return absl::OkStatus();
      }
      ahead_ = StagedStep();
      // On a GPU, pairs of one length cross encoded and are decoded there
      // (pair_batch.h, AssemblePairsOnDevice); otherwise, and for padded
      // batches, the host decodes into float32 and builds the mask.
      const bool on_device = device_.is_cuda() && SameShape(pairs);
      torch::Tensor x0, x1, mask;
      FlowTimes times;
      bool padded = false;
      if (on_device && staged_.step == step && staged_.Holds(pairs)) {
        x0 = staged_.x0;
        x1 = staged_.x1;
        times = staged_.times;
      } else if (on_device) {
        LFT_ASSIGN_OR_RETURN(DevicePairBatch db,
                             AssemblePairsOnDevice(pairs, hidden, device_));
        x0 = db.x0;
        x1 = db.x1;
        times = StepTimes(pairs, step);
      } else {
        PairBatch batch;
        LFT_RETURN_IF_ERROR(AssemblePairBatch(pairs, hidden, &batch));
        x0 = batch.x0.to(device_);
        x1 = batch.x1.to(device_);
        mask = batch.mask;
        padded = batch.padded;
        times = StepTimes(pairs, step);
      }
      staged_ = StagedStep();
      torch::Tensor m = padded ? mask.to(device_) : torch::Tensor();
      if (!on_device || graph_mode_ == GraphMode::kOff) {
        ForwardBackward(x0, x1, m, times);
        return absl::OkStatus();
      }
      return GraphStep(x0, x1, times);
    });
  }

  bool OverlapsInput() const override { return device_.is_cuda(); }

  void StageNextStep(absl::Span<const LatentPairRecord> pairs,
                     uint64_t step) override {
    staged_ = StagedStep();
    if (!device_.is_cuda() || pairs.empty() || !SameShape(pairs)) return;
    // A failure leaves nothing staged: ComputeGradients then redoes the
    // work and reports the error with the step.
    (void)GuardTorch("staging the next step", [&]() -> absl::Status {
      LFT_ASSIGN_OR_RETURN(
          DevicePairBatch db,
          AssemblePairsOnDevice(pairs, layer_->shape().hidden, device_));
      StagedStep s;
      s.x0 = db.x0;
      s.x1 = db.x1;
      s.times = StepTimes(pairs, step);
      s.step = step;
      for (const LatentPairRecord& p : pairs)
        s.keys.push_back({p.shard, p.chunk, p.sequence});
      staged_ = std::move(s);
      return absl::OkStatus();
    });
  }

  double ModelFlopsPerToken(int64_t sequence_length) const override {
    FlowFlopsShape s;
    s.hidden = layer_->shape().hidden;
    s.intermediate = layer_->weights().fc1_w.size(0);
    s.sequence = sequence_length;
    s.evaluations = method_ == "regression"
                        ? 1
                        : FlowEvaluationsPerStep(
                              loss_.method != FlowMethod::kSfm,
                              loss_.method != FlowMethod::kFw, loss_.fw_steps,
                              loss_.rule == StepRule::kMidpoint);
    return FlowStepFlopsPerToken(s);
  }

  void* gradient_data() override { return flat_.data_ptr(); }
  size_t gradient_count() const override {
    return static_cast<size_t>(adam_.size()) + 1;
  }
  CollectiveDtype gradient_dtype() const override {
    return CollectiveDtype::kF32;
  }

  absl::StatusOr<double> ApplyGradients(double scale, double clip_norm,
                                        double lr) override {
    RECORD_USER_SCOPE("lft::apply_gradients");
    return GuardTorch("optimizer step", [&]() -> absl::StatusOr<double> {
      torch::NoGradGuard no_grad;
      // x * 1.0 is x: one rank skips a pass over the buffer.
      if (scale != 1.0) flat_.mul_(scale);
      // The loss's copy is queued now and waited for last, behind the
      // update and the next step's replay: the host wait overlaps both.
      loss_readback_.Start(flat_[adam_.size()]);
      torch::Tensor g = flat_.narrow(0, 0, adam_.size());
      adam_.Step(g, lr, ClipCoefficient(g, clip_norm));
      ReplayStagedStepAhead();
      return loss_readback_.Wait();
    });
  }

  absl::StatusOr<std::string> SaveCheckpoint(const TrainingPosition& pos,
                                             uint32_t world_size) override {
    return GuardTorch(
        "saving checkpoint", [&]() -> absl::StatusOr<std::string> {
          FlowCheckpoint c;
          FlowCheckpointHeader& h = c.header;
          h.first_layer = spec_.block().first_layer();
          h.end_layer = spec_.block().end_layer();
          h.method = method_;
          h.init = Init();
          h.time_embed_dim = layer_->time_embed_dim();
          h.step = pos.step;
          h.tokens = pos.tokens;
          h.epoch = pos.epoch;
          h.blocks_consumed = pos.pairs_consumed;
          h.seed = spec_.training().seed();
          h.world_size = world_size;
          h.losses = pos.losses;
          c.weights = FlowLayerWeights(*layer_);
          c.optimizer["exp_avg"] = adam_.exp_avg().to(torch::kCPU);
          c.optimizer["exp_avg_sq"] = adam_.exp_avg_sq().to(torch::kCPU);
          c.optimizer["step"] = torch::full(
              {1}, static_cast<int64_t>(adam_.steps()), torch::kLong);
          return SerializeFlowCheckpoint(c);
        });
  }

  absl::StatusOr<TrainingPosition> RestoreCheckpoint(
      absl::string_view blob) override {
    LFT_ASSIGN_OR_RETURN(FlowCheckpoint c, ParseFlowCheckpoint(blob));
    const FlowCheckpointHeader& h = c.header;
    if (h.first_layer != spec_.block().first_layer() ||
        h.end_layer != spec_.block().end_layer() || h.method != method_ ||
        h.init != Init()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint is for block [", h.first_layer, ", ", h.end_layer,
          ") method ", h.method, " init ", h.init, ", the job trains [",
          spec_.block().first_layer(), ", ", spec_.block().end_layer(),
          ") method ", method_, " init ", Init()));
    }
    return GuardTorch(
        "restoring checkpoint", [&]() -> absl::StatusOr<TrainingPosition> {
          torch::NoGradGuard no_grad;
          std::vector<torch::Tensor> params = layer_->parameters();
          for (size_t i = 0; i < params.size(); ++i) {
            auto it = c.weights.find(names_[i]);
            if (it == c.weights.end() ||
                it->second.sizes() != params[i].sizes()) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "checkpoint weight \"", names_[i],
                  "\" is missing or of another shape (another teacher?)"));
            }
            // In place: the parameters are views of the optimizer's
            // buffer, which a recorded graph reads.
            params[i].copy_(it->second);
          }
          auto avg = c.optimizer.find("exp_avg");
          auto sq = c.optimizer.find("exp_avg_sq");
          auto st = c.optimizer.find("step");
          if (avg == c.optimizer.end() || sq == c.optimizer.end() ||
              st == c.optimizer.end() || avg->second.numel() != adam_.size() ||
              sq->second.numel() != adam_.size()) {
            return absl::InvalidArgumentError(
                "checkpoint has no AdamW state of this layer's size");
          }
          adam_.SetState(avg->second, sq->second,
                         static_cast<uint64_t>(st->second[0].item<int64_t>()));
          TrainingPosition pos;
          pos.step = h.step;
          pos.tokens = h.tokens;
          pos.epoch = h.epoch;
          pos.pairs_consumed = h.blocks_consumed;
          pos.losses = h.losses;
          return pos;
        });
  }

 private:
  std::string Init() const {
    return spec_.training().estimator_init() ==
                       lft::v1::ESTIMATOR_INIT_ADALN_ZERO &&
                   method_ != "regression"
               ? "adaln-zero"
               : "teacher";
  }

  // The flow times of every pair of the step, as float32 on the device:
  // drawn on the host from (seed, step, pair key), the same on whichever
  // rank holds the pair.
  FlowTimes StepTimes(absl::Span<const LatentPairRecord> pairs,
                      uint64_t step) const {
    std::vector<torch::Tensor> fw_rows, sfm_rows;
    for (const LatentPairRecord& p : pairs) {
      uint64_t h = SplitMix64Hash(spec_.training().seed());
      h = SplitMix64Hash(h ^ step);
      h = SplitMix64Hash(h ^ (static_cast<uint64_t>(p.shard) << 32 | p.chunk));
      h = SplitMix64Hash(h ^ p.sequence);
      auto gen = at::detail::createCPUGenerator(h);
      FlowTimes t = DrawFlowTimes(1, loss_, gen);
      if (t.fw_inner.defined()) fw_rows.push_back(t.fw_inner);
      if (t.sfm.defined()) sfm_rows.push_back(t.sfm);
    }
    // On CUDA through pinned memory, without waiting: a copy from pageable
    // memory would wait for the step running on the device.
    auto to_device = [this](const std::vector<torch::Tensor>& rows) {
      torch::Tensor t = torch::cat(rows, 0).to(torch::kFloat);
      if (!device_.is_cuda()) return t;
      return t.pin_memory().to(device_, /*non_blocking=*/true);
    };
    FlowTimes times;
    if (!fw_rows.empty()) times.fw_inner = to_device(fw_rows);
    if (!sfm_rows.empty()) times.sfm = to_device(sfm_rows);
    return times;
  }

  // Forward and backward of one step's loss; leaves the gradients and the
  // loss in flat_. Only device work on tensors given or owned: a CUDA graph
  // records it as it is.
  void ForwardBackward(const torch::Tensor& x0, const torch::Tensor& x1,
                       const torch::Tensor& mask, const FlowTimes& times) {
    for (torch::Tensor& p : layer_->parameters()) p.mutable_grad().reset();
    const int64_t b = x0.size(0);
    // On CUDA, bf16 copies of the weights, once for every evaluation of
    // the step: one cast of the whole buffer, as autograd leaves over
    // views of it. Their gradients go to views of weight_grads_ (the sinks)
    // inside the fused ops' backward; whatever autograd still delivers to
    // a leaf (ops on LibTorch's path) is added after.
    std::vector<torch::Tensor> leaves, sinks;
    if (device_.is_cuda()) {
      torch::NoGradGuard no_grad;
      step_weights_.copy_(adam_.master());
      weight_grads_.zero_();
      leaves = step_weights_.split_with_sizes(param_numels_);
      sinks = weight_grads_.split_with_sizes(param_numels_);
      for (size_t i = 0; i < leaves.size(); ++i) {
        const auto shape = adam_.params()[i].sizes();
        leaves[i] = leaves[i].view(shape).detach().requires_grad_(true);
        sinks[i] = sinks[i].view(shape);
      }
    }
    const FlowEvalWeights w =
        device_.is_cuda() ? layer_->EvalWeights([&](const torch::Tensor& p) {
          return leaves.at(param_index_.at(p.unsafeGetTensorImpl()));
        })
                          : layer_->EvalWeights();
    std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
    for (size_t i = 0; i < leaves.size(); ++i)
      pairs.emplace_back(leaves[i], sinks[i]);
    ScopedWeightGradSinks scope(pairs);
    const torch::Tensor loss = StepLoss(x0, x1, mask, times, w, b);
    loss.to(torch::kFloat).backward();
    torch::NoGradGuard no_grad;
    scope.Finish();
    if (device_.is_cuda()) {
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (leaves[i].grad().defined()) sinks[i].add_(leaves[i].grad());
      }
      flat_.narrow(0, 0, adam_.size()).copy_(weight_grads_);
    } else {
      adam_.GatherGradients(flat_);
    }
    flat_[adam_.size()].copy_(loss.detach().to(torch::kFloat));
  }

  // The step's loss, in the weights w.
  torch::Tensor StepLoss(const torch::Tensor& x0, const torch::Tensor& x1,
                         const torch::Tensor& mask, const FlowTimes& times,
                         const FlowEvalWeights& w, int64_t b) {
    if (method_ == "regression") {
      torch::Tensor t0 = torch::zeros({b}, x0.options());
      return MaskedMse(x0 + layer_->Velocity(x0, t0, w), x1, mask);
    }
    // The AdaLN factors of every evaluation in one batched pass: all the
    // loss's times are known before it runs.
    const std::vector<torch::Tensor> factors = layer_->FactorsAt(
        torch::stack(FlowEvaluationTimes(loss_, times, b, x0)), w);
    IndexedVelocityFn u = [&](const torch::Tensor& x, const torch::Tensor&,
                              int64_t evaluation) {
      return layer_->VelocityWithFactors(x, factors.at(evaluation), w);
    };
    return FlowLossAt(u, x0, x1, mask, loss_, times);
  }

  // A step through the recorded graph: its inputs are copied into the
  // graph's own tensors and it replays; recorded on the second step of a
  // shape (the first pays one-time costs eagerly), re-recorded if the shape
  // changes. If recording fails the engine stays eager for good.
  absl::Status GraphStep(const torch::Tensor& x0, const torch::Tensor& x1,
                         const FlowTimes& times) {
    const bool same = graph_.captured() && gx0_.sizes() == x0.sizes();
    if (!same) {
      if (!seen_shape_ || seen_sizes_ != x0.sizes().vec()) {
        seen_shape_ = true;
        seen_sizes_ = x0.sizes().vec();
        ForwardBackward(x0, x1, torch::Tensor(), times);
        return absl::OkStatus();
      }
      gx0_ = x0.clone();
      gx1_ = x1.clone();
      gtimes_ = FlowTimes();
      if (times.fw_inner.defined()) gtimes_.fw_inner = times.fw_inner.clone();
      if (times.sfm.defined()) gtimes_.sfm = times.sfm.clone();
      absl::Status s = graph_.Capture(
          [this]() { ForwardBackward(gx0_, gx1_, torch::Tensor(), gtimes_); });
      if (s.ok()) {
        LogInfo("training step recorded as a CUDA graph",
                {{"batch", x0.size(0)}, {"tokens", x0.size(1)}});
      } else {
        if (graph_mode_ == GraphMode::kRequire) return s;
        LogWarning("training steps stay eager", {{"error", s.ToString()}});
        graph_mode_ = GraphMode::kOff;
        ForwardBackward(x0, x1, torch::Tensor(), times);
        return absl::OkStatus();
      }
    } else {
      ReplayWith(x0, x1, times);
      return absl::OkStatus();
    }
    graph_.Replay();
    return absl::OkStatus();
  }

  // Copies a step's inputs into the recorded graph's own and replays it.
  void ReplayWith(const torch::Tensor& x0, const torch::Tensor& x1,
                  const FlowTimes& times) {
    gx0_.copy_(x0);
    gx1_.copy_(x1);
    if (times.fw_inner.defined()) gtimes_.fw_inner.copy_(times.fw_inner);
    if (times.sfm.defined()) gtimes_.sfm.copy_(times.sfm);
    graph_.Replay();
  }

  // Queues the staged next step's graph replay (see the file comment).
  void ReplayStagedStepAhead() {
    ahead_ = StagedStep();
    if (graph_mode_ == GraphMode::kOff || !graph_.captured() ||
        !staged_.x0.defined() || staged_.x0.sizes() != gx0_.sizes()) {
      return;
    }
    ReplayWith(staged_.x0, staged_.x1, staged_.times);
    ahead_.step = staged_.step;
    ahead_.keys = staged_.keys;
  }

  const lft::v1::JobSpec spec_;
  const torch::Device device_;
  const std::string method_;
  FlowLayer layer_;
  AdamW adam_;
  FlowLossOptions loss_;
  std::vector<std::string> names_;
  torch::Tensor flat_;          // [P + 1]: gradients, then the loss
  torch::Tensor step_weights_;  // CUDA: [P] bf16, this step's weights
  torch::Tensor weight_grads_;  // CUDA: [P] bf16, their gradients
  std::unordered_map<const void*, size_t> param_index_;  // in master order
  std::vector<int64_t> param_numels_;
  GraphMode graph_mode_;
  bool seen_shape_ = false;
  std::vector<int64_t> seen_sizes_;
  CudaStepGraph graph_;
  torch::Tensor gx0_, gx1_;  // the graph's inputs
  FlowTimes gtimes_;
  // The next step's inputs, on the device (StageNextStep).
  struct StagedStep {
    uint64_t step = ~uint64_t{0};
    torch::Tensor x0, x1;
    FlowTimes times;
    std::vector<std::tuple<uint32_t, uint32_t, uint64_t>> keys;
    bool Holds(absl::Span<const LatentPairRecord> pairs) const {
      if (keys.size() != pairs.size()) return false;
      for (size_t i = 0; i < keys.size(); ++i) {
        if (keys[i] !=
            std::make_tuple(pairs[i].shard, pairs[i].chunk, pairs[i].sequence))
          return false;
      }
      return true;
    }
  };
  StagedStep staged_;
  // The step whose graph ReplayStagedStepAhead queued (keys only).
  StagedStep ahead_;
  DeviceScalarReadback loss_readback_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<TrainingEngine>> NewFlowTrainingEngine(
    const lft::v1::JobSpec& spec, const std::string& device) {
  if (MethodName(spec.training().method()).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "training.method ", lft::v1::Method_Name(spec.training().method()),
        " is not sfm, fw, hybrid or regression"));
  }
  return GuardTorch(
      "trainer engine",
      [&]() -> absl::StatusOr<std::unique_ptr<TrainingEngine>> {
        torch::Device dev(device);
        if (dev.is_cuda() && !torch::cuda::is_available()) {
          return absl::FailedPreconditionError(absl::StrCat(
              "device ", device, " requested but CUDA is not available"));
        }
        NeoXLoadOptions lo;  // float32 on the CPU: only layer m is kept
        LFT_ASSIGN_OR_RETURN(std::unique_ptr<GptNeoX> teacher,
                             GptNeoX::Load(spec.teacher().path(), lo));
        const int64_t m = spec.block().first_layer();
        const int64_t n = spec.block().end_layer();
        const int64_t layers = teacher->config().num_hidden_layers;
        if (m < 0 || m >= n || n > layers) {
          return absl::InvalidArgumentError(
              absl::StrCat("block [", m, ", ", n, ") is outside the teacher's ",
                           layers, " layers (", spec.teacher().path(), ")"));
        }
        FlowLayerOptions fo;
        fo.init = spec.training().estimator_init() ==
                              lft::v1::ESTIMATOR_INIT_ADALN_ZERO &&
                          spec.training().method() != lft::v1::METHOD_REGRESSION
                      ? FlowInit::kAdaLnZero
                      : FlowInit::kTeacherLayer;
        fo.seed = spec.training().seed();
        fo.device = dev;
        fo.dtype = torch::kFloat;  // master weights; bf16 casts on CUDA
        FlowLayer layer(teacher->layer(m), teacher->layer_shape(), fo);
        return std::unique_ptr<TrainingEngine>(
            new FlowTrainingEngine(spec, dev, std::move(layer)));
      });
}

}  // namespace lft
