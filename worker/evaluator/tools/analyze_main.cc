// lft-analyze: the recoupling-ratio matrix R(m, n) over all blocks
// 0 <= m < n <= L of a teacher, with angular distance and Block Influence.
//
//   lft-analyze --teacher DIR --heldout FILE.jsonl.zst [--tokens 256]
//     [--seq 128] [--out-json F] [--out-png F] [--sinkhorn]
//     [--epsilon 0.001] [--iterations 5000] [--device cpu|cuda]
//     [--dtype float32|bfloat16]
//
// Prints the matrix as a table; writes JSON (RecouplingMatrix::ToJson) and a
// heatmap PNG when asked. Exit codes: 0 ok, 2 usage error, 1 failure (with a
// message on stderr). `lftctl analyze` runs this binary; keep flags stable.
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/base/flags.h"
#include "common/tensor/safetensors.h"
#include "worker/evaluator/heldout.h"
#include "worker/evaluator/recoupling_matrix.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/teacher_loader.h"

namespace {

constexpr char kUsage[] =
    "usage: lft-analyze --teacher DIR --heldout FILE.jsonl.zst [--tokens 256] "
    "[--seq 128] [--out-json F] [--out-png F] [--sinkhorn] [--epsilon 0.001] "
    "[--iterations 5000] [--device cpu|cuda] [--dtype float32|bfloat16]\n";

int Usage(const std::string& problem) {
  std::fprintf(stderr, "lft-analyze: %s\n%s", problem.c_str(), kUsage);
  return 2;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "lft-analyze: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<lft::Flags> flags =
      lft::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                        {"teacher", "heldout", "tokens", "seq", "out-json",
                         "out-png", "device", "dtype", "epsilon", "iterations"},
                        {"sinkhorn", "help"});
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (!flags->positional().empty()) {
    return Usage("unexpected argument \"" + flags->positional()[0] + "\"");
  }
  std::map<std::string, std::string> v = flags->values();
  if (flags->Has("help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  if (!v.count("teacher") || !v.count("heldout")) {
    return Usage("--teacher and --heldout are required");
  }
  int64_t tokens = 256, seq = 128;
  if (v.count("tokens") &&
      (!absl::SimpleAtoi(v["tokens"], &tokens) || tokens < 2)) {
    return Usage("--tokens must be an integer >= 2");
  }
  if (v.count("seq") && (!absl::SimpleAtoi(v["seq"], &seq) || seq < 2)) {
    return Usage("--seq must be an integer >= 2");
  }
  // Sinkhorn's entropic blur, relative to the mean cost. Hidden states of
  // neighbouring tokens sit far closer than the mean distance, so the
  // library default (0.01) spreads the plan over them; see
  // docs/algorithms.md for the measured agreement with the exact ratio.
  double epsilon = 0.001;
  int64_t iterations = 5000;
  if (v.count("epsilon") &&
      (!absl::SimpleAtod(v["epsilon"], &epsilon) || !(epsilon > 0))) {
    return Usage("--epsilon must be a positive number");
  }
  if (v.count("iterations") &&
      (!absl::SimpleAtoi(v["iterations"], &iterations) || iterations < 1)) {
    return Usage("--iterations must be an integer >= 1");
  }
  const std::string device = v.count("device") ? v["device"] : "cpu";
  if (device != "cpu" && device.rfind("cuda", 0) != 0) {
    return Usage("--device must be cpu or cuda[:N]");
  }
  const std::string dtype = v.count("dtype") ? v["dtype"] : "float32";
  if (dtype != "float32" && dtype != "bfloat16") {
    return Usage("--dtype must be float32 or bfloat16");
  }

  auto teacher =
      lft::LoadTeacherWithTokenizer(v["teacher"], device, dtype == "bfloat16");
  if (!teacher.ok()) return Fail(teacher.status().ToString());
  lft::HeldOutOptions ho;
  ho.sequence_length = seq;
  ho.max_sequences = (tokens + seq - 1) / seq;
  ho.eos_id = (*teacher)->eos_id;
  ho.pad_id = (*teacher)->eos_id;
  auto heldout =
      lft::ReadHeldOut({v["heldout"]}, (*teacher)->tokenizer.get(), ho);
  if (!heldout.ok()) return Fail(heldout.status().ToString());
  if (heldout->valid_tokens() < tokens) {
    std::fprintf(stderr,
                 "lft-analyze: warning: %s holds only %lld tokens; using them "
                 "all\n",
                 v["heldout"].c_str(),
                 static_cast<long long>(heldout->valid_tokens()));
  }
  lft::RecouplingMatrixOptions mo;
  mo.max_tokens = tokens;
  mo.sinkhorn = flags->Has("sinkhorn");
  mo.sinkhorn_options.epsilon = epsilon;
  mo.sinkhorn_options.max_iterations = static_cast<int>(iterations);
  const int64_t layers = (*teacher)->model->config().num_hidden_layers;
  // One line rewritten in place on a terminal; a line per row in logs.
  const bool tty = isatty(STDERR_FILENO) == 1;
  mo.progress = [&](int64_t m) {
    std::fprintf(stderr, "%slft-analyze: row %lld of %lld done%s",
                 tty ? "\r" : "", static_cast<long long>(m + 1),
                 static_cast<long long>(layers),
                 tty && m + 1 < layers ? "" : "\n");
  };
  auto matrix = lft::ComputeRecouplingMatrix(*(*teacher)->model, *heldout, mo);
  if (!matrix.ok()) return Fail(matrix.status().ToString());
  matrix->teacher = v["teacher"];
  std::printf("%s", matrix->FormatTable().c_str());
  if (v.count("out-json")) {
    absl::Status s = lft::WriteFileAtomically(v["out-json"], matrix->ToJson());
    if (!s.ok()) return Fail(s.ToString());
  }
  if (v.count("out-png")) {
    absl::Status s =
        lft::WriteFileAtomically(v["out-png"], matrix->RenderHeatmapPng());
    if (!s.ok()) return Fail(s.ToString());
  }
  return 0;
}
