// lft-train-local: trains the latent flow layer from a teacher directory on
// one process and prints the evaluation table.
//
//   lft-train-local --teacher DIR --m 1 --n 3 [--steps 200] [--batch 8]
//     [--seq-len 32] [--lr 1e-3] [--methods regression,sfm,fw,hybrid]
//     [--eval-k 1,3] [--init teacher|adaln-zero] [--ids FILE.safetensors]
//     [--device cpu|cuda] [--dtype f32|bf16] [--alpha 0.001] [--seed 0]
// (`--key=value` and underscores, as in --seq_len=32, work too.)
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "worker/model/local_trainer.h"

namespace {

const std::vector<lft::FlagSpec>& TrainLocalFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"teacher", "DIR", "GPT-NeoX teacher directory (required)"},
          {"ids", "FILE",
           "token ids (safetensors \"input_ids\"); default: "
           "the synthetic corpus"},
          {"m", "M", "first layer of the replaced block (default 1)"},
          {"n", "N", "end layer of the replaced block (default 2)"},
          {"methods", "LIST",
           "comma list of regression, sfm, fw, hybrid (default "
           "regression,sfm,fw)"},
          {"eval-k", "LIST", "solver step counts to score (default 1,3)"},
          {"steps", "N", "optimizer steps per method (default 200)"},
          {"batch", "N", "sequences per step (default 8)"},
          {"seq-len", "N", "tokens per sequence (default 32)"},
          {"lr", "X", "peak learning rate (default 1e-3)"},
          {"weight-decay", "X", "AdamW weight decay (default 0.01)"},
          {"warmup", "N", "warm-up steps (default 20)"},
          {"grad-clip", "X", "gradient-norm clip (default 1.0)"},
          {"alpha", "X", "SFM weight of the hybrid loss (default 0.001)"},
          {"fw-steps", "K",
           "solver steps Flow Walking trains through "
           "(default 3)"},
          {"init", "NAME",
           "estimator init: teacher or adaln-zero (default "
           "teacher)"},
          {"eval-batches", "N", "held-out batches scored (default 4)"},
          {"seed", "S", "seed (default 0)"},
          {"device", "NAME", "cpu or cuda (default cpu)"},
          {"dtype", "NAME", "teacher activations: f32 or bf16 (default f32)"},
          {"help", "", "print this text and exit"},
      };
  return *flags;
}

constexpr char kSynopsis[] = "lft-train-local --teacher DIR [flags]";

int Usage(const std::string& error) {
  std::fprintf(stderr, "lft-train-local: %s\n\n%s", error.c_str(),
               lft::Flags::Usage(kSynopsis, TrainLocalFlags()).c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), TrainLocalFlags());
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (flags->Has("help")) {
    std::fputs(lft::Flags::Usage(kSynopsis, TrainLocalFlags()).c_str(), stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return Usage("unexpected argument \"" + flags->positional()[0] + "\"");
  }
  lft::LocalTrainOptions o;
  o.teacher_dir = flags->Get("teacher");
  o.ids_file = flags->Get("ids");
  o.init = flags->Get("init", o.init);
  o.device = flags->Get("device", o.device);
  o.dtype = flags->Get("dtype", o.dtype);
  const std::string methods = flags->Get("methods");
  const std::string eval_k = flags->Get("eval-k");
  for (auto [name, target] : std::vector<std::pair<const char*, int64_t*>>{
           {"m", &o.m},
           {"n", &o.n},
           {"steps", &o.steps},
           {"batch", &o.batch_size},
           {"seq-len", &o.seq_len},
           {"warmup", &o.warmup_steps},
           {"fw-steps", &o.fw_steps},
           {"eval-batches", &o.eval_batches}}) {
    auto v = flags->GetInt(name, *target);
    if (!v.ok()) return Usage(std::string(v.status().message()));
    *target = *v;
  }
  for (auto [name, target] : std::vector<std::pair<const char*, double*>>{
           {"lr", &o.lr},
           {"weight-decay", &o.weight_decay},
           {"grad-clip", &o.grad_clip},
           {"alpha", &o.hybrid_alpha}}) {
    auto v = flags->GetDouble(name, *target);
    if (!v.ok()) return Usage(std::string(v.status().message()));
    *target = *v;
  }
  auto seed = flags->GetInt("seed", static_cast<int64_t>(o.seed));
  if (!seed.ok()) return Usage(std::string(seed.status().message()));
  o.seed = static_cast<uint64_t>(*seed);
  if (o.teacher_dir.empty()) return Usage("--teacher DIR is required");
  if (!methods.empty()) o.methods = absl::StrSplit(methods, ',');
  if (!eval_k.empty()) {
    o.eval_k.clear();
    for (absl::string_view k : absl::StrSplit(eval_k, ',')) {
      int64_t v;
      if (!absl::SimpleAtoi(k, &v) || v < 1) {
        return Usage("--eval-k: \"" + std::string(k) +
                     "\" is not a positive integer");
      }
      o.eval_k.push_back(v);
    }
  }
  o.verbose = true;
  auto report = lft::RunLocalTraining(o);
  if (!report.ok()) {
    std::fprintf(stderr, "%s\n", report.status().ToString().c_str());
    return 1;
  }
  for (const auto& log : report->logs) {
    std::printf("%s: loss %.6f -> %.6f over %zu steps\n", log.method.c_str(),
                log.losses.front(), log.losses.back(), log.losses.size());
  }
  std::printf("\n%s", report->FormatTable().c_str());
  return 0;
}
