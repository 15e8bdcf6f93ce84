// lft-export: folds a flow checkpoint (a file as pulled from the store) into
// a plain GPT-NeoX directory with L - (n - m) + k layers (worker/model/
// export.h), copying the teacher's tokenizer.json.
//
//   lft-export --teacher DIR --checkpoint FILE --k K --out DIR
//
// A regression checkpoint is one layer at t = 0, exported with --k 1 only.
// Exit codes: 0 ok, 2 usage error, 1 failure (with a message on stderr).
// `lftctl export` runs this binary; keep flags stable.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "worker/model/export.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/torch_guard.h"

namespace {

constexpr char kUsage[] =
    "usage: lft-export --teacher DIR --checkpoint FILE --k K --out DIR\n";

int Usage(const std::string& problem) {
  std::fprintf(stderr, "lft-export: %s\n%s", problem.c_str(), kUsage);
  return 2;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "lft-export: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  absl::StatusOr<lft::Flags> flags =
      lft::Flags::Parse(std::vector<std::string>(argv + 1, argv + argc),
                        {"teacher", "checkpoint", "k", "out"}, {"help"});
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (!flags->positional().empty()) {
    return Usage("unexpected argument \"" + flags->positional()[0] + "\"");
  }
  std::map<std::string, std::string> v = flags->values();
  if (flags->Has("help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  int64_t k = 0;
  if (!v.count("teacher") || !v.count("checkpoint") || !v.count("out") ||
      !v.count("k")) {
    return Usage("--teacher, --checkpoint, --k and --out are required");
  }
  if (!absl::SimpleAtoi(v["k"], &k) || k < 1) {
    return Usage("--k must be an integer >= 1");
  }
  std::ifstream in(v["checkpoint"], std::ios::binary);
  if (!in) return Fail("cannot read checkpoint file " + v["checkpoint"]);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string bytes = buf.str();

  absl::Status s = lft::GuardTorch("export", [&]() -> absl::Status {
    auto checkpoint = lft::ParseFlowCheckpoint(bytes);
    if (!checkpoint.ok()) {
      return lft::Annotate(checkpoint.status(), v["checkpoint"]);
    }
    if (checkpoint->header.method == "regression" && k != 1) {
      return absl::InvalidArgumentError(
          "a regression checkpoint is one layer at t = 0; export it with "
          "--k 1");
    }
    auto teacher = lft::GptNeoX::Load(v["teacher"]);
    if (!teacher.ok()) return teacher.status();
    auto layer = lft::RestoreFlowLayer(**teacher, *checkpoint, {});
    if (!layer.ok()) return lft::Annotate(layer.status(), v["checkpoint"]);
    auto model = lft::ExportEulerModel(**teacher, **layer,
                                       checkpoint->header.first_layer,
                                       checkpoint->header.end_layer, k);
    if (!model.ok()) return model.status();
    std::error_code ec;
    fs::create_directories(v["out"], ec);
    if (ec) {
      return absl::InternalError("cannot create " + v["out"] + ": " +
                                 ec.message());
    }
    absl::Status w = lft::WriteExportedModel(*model, v["out"]);
    if (!w.ok()) return w;
    const fs::path tok = fs::path(v["teacher"]) / "tokenizer.json";
    if (fs::exists(tok)) {
      fs::copy_file(tok, fs::path(v["out"]) / "tokenizer.json",
                    fs::copy_options::overwrite_existing, ec);
      if (ec) {
        return absl::InternalError("cannot copy " + tok.string() + ": " +
                                   ec.message());
      }
    }
    std::printf(
        "exported %lld layers (block [%lld, %lld) as %lld Euler "
        "steps) to %s\n",
        static_cast<long long>(model->config.num_hidden_layers),
        static_cast<long long>(checkpoint->header.first_layer),
        static_cast<long long>(checkpoint->header.end_layer),
        static_cast<long long>(k), v["out"].c_str());
    return absl::OkStatus();
  });
  if (!s.ok()) return Fail(s.ToString());
  return 0;
}
