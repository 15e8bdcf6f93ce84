// What it computes, per step and rank: x0, x1 [b, T, H] decoded from the
// rank's pairs; loss = the job's flow loss (model core, flow_layer.h) with
// per-pair times drawn from (seed, step, pair key), or the regression MSE
// of Block(x0, t = 0) against x1; backward; the gradients of all parameters
// copied into one flat float32 buffer [P + 1] whose last element is the
// loss, so a single all-reduce averages both. The optimizer is AdamW
// written out on flat moment buffers (torch's update rule: decoupled decay
// p *= 1 - lr wd, bias-corrected moments, eps added to sqrt(v_hat)) so that
// its state is two tensors in the checkpoint, identical across LibTorch
// versions. Clipping follows torch's clip_grad_norm_ (coefficient
// clip / (norm + 1e-6) when below 1).
#include "worker/trainer/engine/flow_training_engine.h"

#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/split_mix64.h"
#include "common/base/status.h"
#include "common/tensor/tensor_codec.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/flow_flops.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/pair_batch.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

constexpr double kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8;

// bf16 autocast on CUDA for the forward pass; the API moved in LibTorch 2.
class CudaAutocast {
 public:
  explicit CudaAutocast(bool on) : on_(on) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR >= 2
    prev_ = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    prev_ = at::autocast::is_enabled();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
#endif
    at::autocast::increment_nesting();
  }
  ~CudaAutocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if TORCH_VERSION_MAJOR >= 2
    at::autocast::set_autocast_enabled(at::kCUDA, prev_);
#else
    at::autocast::set_enabled(prev_);
#endif
  }

 private:
  bool on_;
  bool prev_ = false;
};

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
        layer_(std::move(layer)) {
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
      params_.push_back(p.value());
      offsets_.push_back(count_);
      count_ += static_cast<size_t>(p.value().numel());
    }
    auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(device_);
    flat_ = torch::zeros({static_cast<int64_t>(count_) + 1}, f32);
    exp_avg_ = torch::zeros({static_cast<int64_t>(count_)}, f32);
    exp_avg_sq_ = torch::zeros({static_cast<int64_t>(count_)}, f32);
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
      const int64_t b = static_cast<int64_t>(pairs.size());
      // On a GPU, pairs of one length cross encoded and are decoded there
      // (pair_batch.h, AssemblePairsOnDevice); otherwise, and for padded
      // batches, the host decodes into float32 and builds the mask.
      const bool on_device = device_.is_cuda() && SameShape(pairs);
      torch::Tensor x0, x1, mask;
      bool padded = false;
      if (on_device) {
        LFT_ASSIGN_OR_RETURN(DevicePairBatch db,
                             AssemblePairsOnDevice(pairs, hidden, device_));
        x0 = db.x0;
        x1 = db.x1;
      } else {
        PairBatch batch;
        LFT_RETURN_IF_ERROR(AssemblePairBatch(pairs, hidden, &batch));
        x0 = batch.x0;
        x1 = batch.x1;
        mask = batch.mask;
        padded = batch.padded;
      }
      std::vector<torch::Tensor> fw_rows, sfm_rows;
      for (int64_t i = 0; i < b; ++i) {
        const LatentPairRecord& p = pairs[i];
        // The pair's own times: the same on whichever rank holds it.
        uint64_t h = SplitMix64Hash(spec_.training().seed());
        h = SplitMix64Hash(h ^ step);
        h = SplitMix64Hash(h ^
                           (static_cast<uint64_t>(p.shard) << 32 | p.chunk));
        h = SplitMix64Hash(h ^ p.sequence);
        auto gen = at::detail::createCPUGenerator(h);
        FlowTimes t = DrawFlowTimes(1, loss_, gen);
        if (t.fw_inner.defined()) fw_rows.push_back(t.fw_inner);
        if (t.sfm.defined()) sfm_rows.push_back(t.sfm);
      }
      FlowTimes times;
      if (!fw_rows.empty()) times.fw_inner = torch::cat(fw_rows, 0);
      if (!sfm_rows.empty()) times.sfm = torch::cat(sfm_rows, 0);
      x0 = x0.to(device_);
      x1 = x1.to(device_);
      torch::Tensor m = padded ? mask.to(device_) : torch::Tensor();
      for (auto& p : params_) {
        if (p.grad().defined()) p.mutable_grad().zero_();
      }
      torch::Tensor loss;
      {
        CudaAutocast autocast(device_.is_cuda());
        if (method_ == "regression") {
          loss = MaskedMse(layer_->Block(x0, torch::zeros({b}, x0.options())),
                           x1, m);
        } else {
          VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
            return layer_->Velocity(x, t);
          };
          loss = FlowLossAt(u, x0, x1, m, loss_, times);
        }
      }
      loss.to(torch::kFloat).backward();
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params_.size(); ++i) {
        torch::Tensor slice = flat_.narrow(0, static_cast<int64_t>(offsets_[i]),
                                           params_[i].numel());
        if (params_[i].grad().defined()) {
          slice.copy_(params_[i].grad().reshape({-1}));
        } else {
          slice.zero_();
        }
      }
      flat_[static_cast<int64_t>(count_)].copy_(
          loss.detach().to(torch::kFloat));
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
  size_t gradient_count() const override { return count_ + 1; }
  CollectiveDtype gradient_dtype() const override {
    return CollectiveDtype::kF32;
  }

  absl::StatusOr<double> ApplyGradients(double scale, double clip_norm,
                                        double lr) override {
    RECORD_USER_SCOPE("lft::apply_gradients");
    return GuardTorch("optimizer step", [&]() -> absl::StatusOr<double> {
      torch::NoGradGuard no_grad;
      flat_.mul_(scale);
      // Read after the update kernels are queued: the one host wait of a
      // step then overlaps them.
      torch::Tensor loss_value = flat_[static_cast<int64_t>(count_)].clone();
      torch::Tensor g = flat_.narrow(0, 0, static_cast<int64_t>(count_));
      if (clip_norm > 0) {
        // On the device, as torch's clip_grad_norm_: no host round trip.
        torch::Tensor coef = (clip_norm / (g.norm() + 1e-6)).clamp_max(1.0);
        g.mul_(coef);
      }
      ++adam_step_;
      const double wd = spec_.training().weight_decay();
      const double bc1 = 1 - std::pow(kBeta1, static_cast<double>(adam_step_));
      const double bc2 = 1 - std::pow(kBeta2, static_cast<double>(adam_step_));
      exp_avg_.mul_(kBeta1).add_(g, 1 - kBeta1);
      exp_avg_sq_.mul_(kBeta2).addcmul_(g, g, 1 - kBeta2);
      torch::Tensor denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(kEps);
      torch::Tensor update = exp_avg_ / denom;
      for (size_t i = 0; i < params_.size(); ++i) {
        torch::Tensor& p = params_[i];
        p.mul_(1 - lr * wd);
        p.add_(update.narrow(0, static_cast<int64_t>(offsets_[i]), p.numel())
                   .view(p.sizes()),
               -lr / bc1);
      }
      return loss_value.item<double>();
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
          c.optimizer["exp_avg"] = exp_avg_.to(torch::kCPU);
          c.optimizer["exp_avg_sq"] = exp_avg_sq_.to(torch::kCPU);
          c.optimizer["step"] =
              torch::full({1}, static_cast<int64_t>(adam_step_), torch::kLong);
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
          for (size_t i = 0; i < params_.size(); ++i) {
            auto it = c.weights.find(names_[i]);
            if (it == c.weights.end() ||
                it->second.sizes() != params_[i].sizes()) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "checkpoint weight \"", names_[i],
                  "\" is missing or of another shape (another teacher?)"));
            }
            params_[i].copy_(it->second);
          }
          auto avg = c.optimizer.find("exp_avg");
          auto sq = c.optimizer.find("exp_avg_sq");
          auto st = c.optimizer.find("step");
          if (avg == c.optimizer.end() || sq == c.optimizer.end() ||
              st == c.optimizer.end() ||
              avg->second.numel() != static_cast<int64_t>(count_) ||
              sq->second.numel() != static_cast<int64_t>(count_)) {
            return absl::InvalidArgumentError(
                "checkpoint has no AdamW state of this layer's size");
          }
          exp_avg_.copy_(avg->second.reshape({-1}));
          exp_avg_sq_.copy_(sq->second.reshape({-1}));
          adam_step_ = static_cast<uint64_t>(st->second[0].item<int64_t>());
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

  const lft::v1::JobSpec spec_;
  const torch::Device device_;
  const std::string method_;
  FlowLayer layer_;
  FlowLossOptions loss_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> params_;
  std::vector<size_t> offsets_;
  size_t count_ = 0;
  torch::Tensor flat_, exp_avg_, exp_avg_sq_;
  uint64_t adam_step_ = 0;
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
        fo.dtype = torch::kFloat;  // master weights; autocast on CUDA
        FlowLayer layer(teacher->layer(m), teacher->layer_shape(), fo);
        return std::unique_ptr<TrainingEngine>(
            new FlowTrainingEngine(spec, dev, std::move(layer)));
      });
}

}  // namespace lft
