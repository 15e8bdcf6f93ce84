// Local trainer; see local_trainer.h.
#include "worker/model/local_trainer.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status.h"
#include "worker/model/adamw.h"
#include "worker/model/eval_metrics.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/lr_schedule.h"
#include "worker/model/tensor_io.h"
#include "worker/model/torch_guard.h"

namespace lft {

std::string LocalTrainReport::FormatTable() const {
  std::string s =
      "| method | k | NFE | NMSE | KL_x | KL_PQ | PPL "
      "|\n|---|---|---|---|---|---|---|\n";
  for (const EvalRow& r : rows) {
    absl::StrAppendFormat(&s, "| %s | %s | %s | %.4f | %.4f | %.4f | %.3f |\n",
                          r.method, r.k ? absl::StrCat(r.k) : "-",
                          r.nfe ? absl::StrCat(r.nfe) : "-", r.nmse, r.kl_x,
                          r.kl_pq, r.ppl);
  }
  absl::StrAppendFormat(&s,
                        "\nblock signals: angular distance %.4f, 1 - cos %.4f, "
                        "recoupling ratio %.4f\n",
                        angular_distance, block_influence, recoupling_ratio);
  return s;
}

const EvalRow* LocalTrainReport::Find(const std::string& method,
                                      int64_t k) const {
  for (const EvalRow& r : rows) {
    if (r.method == method && r.k == k) return &r;
  }
  return nullptr;
}

namespace {

struct Batch {
  torch::Tensor ids, mask;
};

// Deterministic batch streams: training and held-out never overlap.
class BatchSource {
 public:
  BatchSource(const LocalTrainOptions& o, int64_t vocab)
      : o_(o), vocab_(vocab) {}

  absl::Status Init() {
    if (o_.ids_file.empty()) return absl::OkStatus();
    LFT_ASSIGN_OR_RETURN(auto t, LoadTensors(o_.ids_file));
    if (!t.count("input_ids") || t["input_ids"].dim() != 2) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.ids_file, ": needs an \"input_ids\" I64 [N, T] tensor"));
    }
    ids_ = t["input_ids"].to(torch::kLong);
    mask_ = t.count("mask") ? t["mask"].to(torch::kFloat)
                            : torch::ones(ids_.sizes());
    const int64_t rows = ids_.size(0);
    eval_rows_ = std::min<int64_t>(rows / 2, o_.eval_batches * o_.batch_size);
    if (rows - eval_rows_ < 1 || eval_rows_ < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.ids_file, ": needs at least 2 sequences, has ", rows));
    }
    if (ids_.min().item<int64_t>() < 0 ||
        ids_.max().item<int64_t>() >= vocab_) {
      return absl::InvalidArgumentError(absl::StrCat(
          o_.ids_file, ": token ids outside the teacher's vocabulary"));
    }
    return absl::OkStatus();
  }

  Batch Train(int64_t step) { return Make(step, false); }
  Batch Eval(int64_t i) { return Make(i, true); }

 private:
  Batch Make(int64_t i, bool eval) {
    const int64_t b = o_.batch_size;
    if (!ids_.defined()) {
      auto gen = at::detail::createCPUGenerator(o_.seed * 1000003 +
                                                (eval ? 7919 : 17) * (i + 1));
      torch::Tensor ids =
          at::randint(0, vocab_, {b, o_.seq_len}, gen,
                      torch::TensorOptions().dtype(torch::kLong));
      return {ids, torch::ones({b, o_.seq_len})};
    }
    const int64_t train_rows = ids_.size(0) - eval_rows_;
    torch::Tensor idx = torch::empty({b}, torch::kLong);
    for (int64_t r = 0; r < b; ++r) {
      idx[r] = eval ? train_rows + (i * b + r) % eval_rows_
                    : (i * b + r) % train_rows;
    }
    return {ids_.index_select(0, idx), mask_.index_select(0, idx)};
  }

  const LocalTrainOptions& o_;
  int64_t vocab_;
  torch::Tensor ids_, mask_;
  int64_t eval_rows_ = 0;
};

double LearningRate(const LocalTrainOptions& o, int64_t step) {
  return WarmupCosineLr(o.lr, o.min_lr_ratio, o.warmup_steps, o.steps, step);
}

struct Trained {
  std::string method;
  FlowLayer layer{nullptr};
};

absl::StatusOr<Trained> TrainOne(const GptNeoX& teacher,
                                 const LocalTrainOptions& o,
                                 const std::string& method, BatchSource& data,
                                 MethodLog* log) {
  FlowLayerOptions fo;
  fo.init = o.init == "adaln-zero" && method != "regression"
                ? FlowInit::kAdaLnZero
                : FlowInit::kTeacherLayer;
  fo.seed = o.seed;
  fo.device = teacher.options().device;
  fo.dtype = torch::kFloat;  // master weights in fp32
  FlowLayer layer(teacher.layer(o.m), teacher.layer_shape(), fo);
  AdamW opt({AdamWGroup{layer->parameters(), o.weight_decay}});
  torch::Tensor grad = torch::zeros_like(opt.master());
  FlowLossOptions lo;
  lo.method = method == "sfm"  ? FlowMethod::kSfm
              : method == "fw" ? FlowMethod::kFw
                               : FlowMethod::kHybrid;
  lo.fw_steps = o.fw_steps;
  lo.alpha = o.hybrid_alpha;
  auto gen = at::detail::createCPUGenerator(o.seed + 99);
  VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& t) {
    return layer->Velocity(x, t);
  };
  log->method = method;
  for (int64_t step = 0; step < o.steps; ++step) {
    Batch b = data.Train(step);
    LFT_ASSIGN_OR_RETURN(auto pair, teacher.Extract(b.ids, o.m, o.n));
    torch::Tensor x0 = pair.first.to(torch::kFloat),
                  x1 = pair.second.to(torch::kFloat);
    torch::Tensor mask = b.mask.to(x0.device());
    for (torch::Tensor& p : layer->parameters()) p.mutable_grad().reset();
    torch::Tensor loss;
    if (method == "regression") {
      loss = MaskedMse(
          layer->Block(x0, torch::zeros({x0.size(0)}, x0.options())), x1, mask);
    } else {
      loss = FlowLoss(u, x0, x1, mask, lo, gen);
    }
    loss.backward();
    opt.GatherGradients(grad);
    opt.Step(grad, LearningRate(o, step), ClipCoefficient(grad, o.grad_clip));
    log->losses.push_back(loss.item<double>());
    if (o.verbose && (step % 50 == 0 || step + 1 == o.steps)) {
      std::fprintf(stderr, "[%s] step %lld loss %.6f lr %.2e\n", method.c_str(),
                   static_cast<long long>(step), log->losses.back(),
                   LearningRate(o, step));
    }
  }
  return Trained{method, layer};
}

absl::StatusOr<LocalTrainReport> Run(const GptNeoX& teacher,
                                     const LocalTrainOptions& o) {
  const int64_t L = teacher.config().num_hidden_layers;
  if (o.m < 0 || o.m >= o.n || o.n > L) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block [", o.m, ", ", o.n, ") must satisfy 0 <= m < n <= ", L));
  }
  static const std::set<std::string> kMethods = {"regression", "sfm", "fw",
                                                 "hybrid"};
  for (const std::string& m : o.methods) {
    if (!kMethods.count(m)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "method \"", m, "\" is not regression, sfm, fw or hybrid"));
    }
  }
  if (o.init != "teacher" && o.init != "adaln-zero") {
    return absl::InvalidArgumentError(
        absl::StrCat("init \"", o.init, "\" is not teacher or adaln-zero"));
  }
  if (o.steps < 1 || o.batch_size < 1 || o.seq_len < 2 || o.eval_batches < 1) {
    return absl::InvalidArgumentError(
        "steps, batch_size, eval_batches must be >= 1 and seq_len >= 2");
  }
  torch::manual_seed(o.seed);
  BatchSource data(o, teacher.config().vocab_size);
  LFT_RETURN_IF_ERROR(data.Init());
  LocalTrainReport report;
  std::vector<Trained> trained;
  for (const std::string& method : o.methods) {
    report.logs.emplace_back();
    LFT_ASSIGN_OR_RETURN(
        Trained t, TrainOne(teacher, o, method, data, &report.logs.back()));
    trained.push_back(t);
  }

  // Training-free linear map fitted on training batches.
  LinearMapFitter fitter;
  for (int64_t i = 0; i < std::max<int64_t>(o.eval_batches, 4); ++i) {
    Batch b = data.Train(i);
    LFT_ASSIGN_OR_RETURN(auto pair, teacher.Extract(b.ids, o.m, o.n));
    fitter.Add(pair.first, pair.second, b.mask);
  }
  torch::Tensor w_lin = fitter.Solve();

  torch::NoGradGuard ng;
  struct Acc {
    EvalRow row;
    ReplacementMetrics metrics;
  };
  std::vector<Acc> accs;
  auto acc_for = [&](const std::string& method, int64_t k,
                     int64_t nfe) -> Acc& {
    for (Acc& a : accs) {
      if (a.row.method == method && a.row.k == k) return a;
    }
    accs.emplace_back();
    accs.back().row.method = method;
    accs.back().row.k = k;
    accs.back().row.nfe = nfe;
    return accs.back();
  };
  RecouplingSample recoupling(256);
  BlockSignalAccumulator signals;
  for (int64_t i = 0; i < o.eval_batches; ++i) {
    Batch b = data.Eval(i);
    LFT_ASSIGN_OR_RETURN(auto pair, teacher.Extract(b.ids, o.m, o.n));
    torch::Tensor x0 = pair.first, x1 = pair.second;
    torch::Tensor mask = b.mask;
    // KL_x compares tail(x1) with tail(x1_hat); KL_PQ compares the teacher's
    // full forward pass with the compressed model end to end (equal up to
    // rounding for one replaced block, but computed independently).
    LFT_ASSIGN_OR_RETURN(torch::Tensor p_logits, teacher.Tail(x1, o.n));
    LFT_ASSIGN_OR_RETURN(NeoXForwardResult full, teacher.Forward(b.ids));
    auto add = [&](const std::string& method, int64_t k, int64_t nfe,
                   const torch::Tensor& x1_hat) -> absl::Status {
      LFT_ASSIGN_OR_RETURN(torch::Tensor q_logits, teacher.Tail(x1_hat, o.n));
      Acc& a = acc_for(method, k, nfe);
      a.metrics.Add(x1_hat, x1, p_logits, full.logits, q_logits, b.ids, mask);
      return absl::OkStatus();
    };
    LFT_RETURN_IF_ERROR(add("teacher", 0, 0, x1));
    LFT_RETURN_IF_ERROR(add("skip", 0, 0, x0));
    LFT_RETURN_IF_ERROR(add("linear", 0, 0, LinearMapFitter::Apply(w_lin, x0)));
    torch::Tensor x0f = x0.to(torch::kFloat);
    for (Trained& t : trained) {
      if (t.method == "regression") {
        LFT_RETURN_IF_ERROR(
            add("regression", 0, 1,
                t.layer->Block(x0f, torch::zeros({x0.size(0)}, x0f.options()))
                    .to(x1.dtype())));
        continue;
      }
      VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& tt) {
        return t.layer->Velocity(x, tt);
      };
      for (int64_t k : o.eval_k) {
        torch::Tensor x1_hat =
            Integrate(u, x0f, UniformGrid(k), StepRule::kMidpoint);
        LFT_RETURN_IF_ERROR(add(t.method, k,
                                NetworkEvaluations(k, StepRule::kMidpoint),
                                x1_hat.to(x1.dtype())));
      }
    }
    signals.Add(x0, x1, mask);
    // Recoupling ratio over up to 256 valid tokens of the held-out set.
    recoupling.Add(x0, x1, mask);
  }
  for (Acc& a : accs) {
    a.row.nmse = a.metrics.nmse();
    a.row.kl_x = a.metrics.kl_x();
    a.row.kl_pq = a.metrics.kl_pq();
    a.row.ppl = a.metrics.ppl();
    report.rows.push_back(a.row);
  }
  report.angular_distance = signals.Value().angular_distance;
  report.block_influence = signals.Value().block_influence;
  if (recoupling.tokens() > 0) {
    LFT_ASSIGN_OR_RETURN(report.recoupling_ratio, recoupling.Ratio());
  }
  return report;
}

}  // namespace

absl::StatusOr<LocalTrainReport> RunLocalTraining(
    const GptNeoX& teacher, const LocalTrainOptions& options) {
  return GuardTorch("RunLocalTraining",
                    [&]() -> absl::StatusOr<LocalTrainReport> {
                      return Run(teacher, options);
                    });
}

absl::StatusOr<LocalTrainReport> RunLocalTraining(const LocalTrainOptions& o) {
  NeoXLoadOptions lo;
  if (o.device == "cuda") {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(
          "device \"cuda\" requested but CUDA is not available");
    }
    lo.device = torch::Device(torch::kCUDA);
  } else if (o.device != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("device \"", o.device, "\" is not cpu or cuda"));
  }
  if (o.dtype == "bf16") {
    lo.dtype = torch::kBFloat16;
  } else if (o.dtype != "f32") {
    return absl::InvalidArgumentError(
        absl::StrCat("dtype \"", o.dtype, "\" is not f32 or bf16"));
  }
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<GptNeoX> teacher,
                       GptNeoX::Load(o.teacher_dir, lo));
  return RunLocalTraining(*teacher, o);
}

}  // namespace lft
