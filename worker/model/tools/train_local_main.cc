// lft-train-local: trains the latent flow layer from a teacher directory on
// one process and prints the evaluation table.
//
//   lft-train-local --teacher=DIR --m=1 --n=3 [--steps=200] [--batch=8]
//     [--seq_len=32] [--lr=1e-3] [--methods=regression,sfm,fw,hybrid]
//     [--eval_k=1,3] [--init=teacher|adaln-zero] [--ids=FILE.safetensors]
//     [--device=cpu|cuda] [--dtype=f32|bf16] [--alpha=0.001] [--seed=0]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "worker/model/local_trainer.h"

int main(int argc, char** argv) {
  std::map<std::string, std::string> f;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.find('=') == std::string::npos) {
      std::fprintf(stderr, "bad argument \"%s\": expected --key=value\n",
                   a.c_str());
      return 2;
    }
    f[a.substr(2, a.find('=') - 2)] = a.substr(a.find('=') + 1);
  }
  lft::LocalTrainOptions o;
  auto num = [&](const char* key, auto* out) {
    auto it = f.find(key);
    if (it == f.end()) return true;
    bool ok;
    if constexpr (std::is_same_v<std::decay_t<decltype(*out)>, double>) {
      ok = absl::SimpleAtod(it->second, out);
    } else {
      ok = absl::SimpleAtoi(it->second, out);
    }
    if (!ok)
      std::fprintf(stderr, "--%s: \"%s\" is not a number\n", key,
                   it->second.c_str());
    f.erase(it);
    return ok;
  };
  auto str = [&](const char* key, std::string* out) {
    auto it = f.find(key);
    if (it != f.end()) {
      *out = it->second;
      f.erase(it);
    }
  };
  str("teacher", &o.teacher_dir);
  str("ids", &o.ids_file);
  str("init", &o.init);
  str("device", &o.device);
  str("dtype", &o.dtype);
  std::string methods, eval_k;
  str("methods", &methods);
  str("eval_k", &eval_k);
  bool ok = num("m", &o.m) && num("n", &o.n) && num("steps", &o.steps) &&
            num("batch", &o.batch_size) && num("seq_len", &o.seq_len) &&
            num("lr", &o.lr) && num("weight_decay", &o.weight_decay) &&
            num("warmup", &o.warmup_steps) && num("grad_clip", &o.grad_clip) &&
            num("alpha", &o.hybrid_alpha) && num("fw_steps", &o.fw_steps) &&
            num("eval_batches", &o.eval_batches) && num("seed", &o.seed);
  if (!ok) return 2;
  if (!f.empty()) {
    std::fprintf(stderr, "unknown flag --%s\n", f.begin()->first.c_str());
    return 2;
  }
  if (o.teacher_dir.empty()) {
    std::fprintf(stderr, "--teacher=DIR is required\n");
    return 2;
  }
  if (!methods.empty()) o.methods = absl::StrSplit(methods, ',');
  if (!eval_k.empty()) {
    o.eval_k.clear();
    for (absl::string_view k : absl::StrSplit(eval_k, ',')) {
      int64_t v;
      if (!absl::SimpleAtoi(k, &v) || v < 1) {
        std::fprintf(stderr, "--eval_k: bad value\n");
        return 2;
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
