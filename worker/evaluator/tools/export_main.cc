// lft-export: folds a flow checkpoint (a file as pulled from the store) into
// a plain GPT-NeoX directory with L - (n - m) + k layers (worker/model/
// export.h), copying the teacher's tokenizer.json.
//
//   lft-export --teacher DIR --checkpoint FILE --k K --out DIR
//     [--dump-logits FILE --heldout F.jsonl.zst[,F2...] [--seq 128]
//      [--max-sequences 8] [--logit-sequences 4] [--batch 4]
//      [--device cpu|cuda[:N]]]
//
// A regression checkpoint is one layer at t = 0, exported with --k 1 only.
//
// --dump-logits runs, after the export, lft's own compressed model in
// float32 on --device: teacher layers 0..m-1, k Euler steps of the flow
// layer on the grid 0, 1/k, ..., 1 (Integrate, as the evaluator's "euler"
// rows), layers n..L-1, final LayerNorm and head; and the exported
// directory loaded back with GptNeoX::Load. Both see the held-out files
// packed as the evaluator packs them (ReadHeldOut at --seq, the first
// --max-sequences sequences). FILE (safetensors) holds input_ids I64 [B, T],
// mask I64 [B, T] (1 = real token) and logits F32 [b, T, V] of the
// compressed model for the first b = --logit-sequences sequences; its
// metadata and one stdout line "dump {json}" hold the perplexities of both
// (exp of the mean NLL over targets whose token and predecessor are real,
// as the evaluator's PPL) and the max abs logit difference between them
// over all B sequences (the fold's own error; ExportTest bounds it at 1e-4
// on small models). deploy/gpu/hf_export_check.py compares HF transformers
// with FILE.
//
// Exit codes: 0 ok, 2 usage error, 1 failure (with a message on stderr).
// `lftctl export` runs this binary; keep flags stable.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "common/tensor/safetensors.h"
#include "worker/evaluator/heldout.h"
#include "worker/model/eval_metrics.h"
#include "worker/model/export.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/teacher_loader.h"
#include "worker/model/tensor_io.h"
#include "worker/model/torch_guard.h"

namespace {

constexpr char kUsage[] =
    "usage: lft-export --teacher DIR --checkpoint FILE --k K --out DIR\n"
    "         [--dump-logits FILE --heldout F.jsonl.zst[,F2...] [--seq 128]\n"
    "          [--max-sequences 8] [--logit-sequences 4] [--batch 4]\n"
    "          [--device cpu|cuda[:N]]]\n";

int Usage(const std::string& problem) {
  std::fprintf(stderr, "lft-export: %s\n%s", problem.c_str(), kUsage);
  return 2;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "lft-export: %s\n", what.c_str());
  return 1;
}

struct DumpOptions {
  std::string path;
  std::vector<std::string> heldout;
  int64_t seq = 128;
  int64_t max_sequences = 8;
  int64_t logit_sequences = 4;
  int64_t batch = 4;
  std::string device = "cpu";
};

// The dump of --dump-logits (see the file comment). Torch exceptions are
// caught by the caller's GuardTorch.
absl::Status DumpLogits(const std::string& teacher_dir,
                        const lft::FlowCheckpoint& checkpoint, int64_t k,
                        const std::string& export_dir, const DumpOptions& o) {
  auto teacher = lft::LoadTeacherWithTokenizer(teacher_dir, o.device, false);
  if (!teacher.ok()) return teacher.status();
  const lft::GptNeoX& model = *(*teacher)->model;
  lft::NeoXLoadOptions lo;
  lo.device = model.options().device;
  lo.dtype = torch::kFloat;
  auto exported = lft::GptNeoX::Load(export_dir, lo);
  if (!exported.ok()) return lft::Annotate(exported.status(), export_dir);
  lft::FlowLayerOptions fo;
  fo.device = lo.device;
  fo.dtype = torch::kFloat;
  auto layer = lft::RestoreFlowLayer(model, checkpoint, fo);
  if (!layer.ok()) return layer.status();
  lft::HeldOutOptions ho;
  ho.sequence_length = o.seq;
  ho.max_sequences = o.max_sequences;
  ho.eos_id = (*teacher)->eos_id;
  ho.pad_id = (*teacher)->eos_id;
  auto heldout = lft::ReadHeldOut(o.heldout, (*teacher)->tokenizer.get(), ho);
  if (!heldout.ok()) return heldout.status();

  const int64_t m = checkpoint.header.first_layer;
  const int64_t n = checkpoint.header.end_layer;
  const int64_t count = static_cast<int64_t>(heldout->sequences.size());
  const int64_t t = heldout->sequence_length;
  torch::Tensor ids = torch::zeros({count, t}, torch::kLong);
  torch::Tensor mask = torch::zeros({count, t}, torch::kLong);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t j = 0; j < t; ++j) {
      ia[i][j] = heldout->sequences[i].tokens[j];
      ma[i][j] = heldout->sequences[i].mask[j];
    }
  }
  torch::NoGradGuard no_grad;
  lft::FlowLayer& flow = *layer;
  lft::VelocityFn u = [&](const torch::Tensor& x, const torch::Tensor& tt) {
    return flow->Velocity(x, tt);
  };
  lft::PerplexityAccumulator ppl_lft, ppl_export;
  double max_diff = 0;
  std::vector<torch::Tensor> kept;
  const int64_t keep = std::min(o.logit_sequences, count);
  for (int64_t first = 0; first < count; first += o.batch) {
    const int64_t b = std::min(o.batch, count - first);
    const torch::Tensor bid = ids.narrow(0, first, b);
    const torch::Tensor bmask = mask.narrow(0, first, b);
    const torch::Tensor x0 =
        model.RunLayers(model.Embed(bid.to(lo.device)), 0, m);
    const torch::Tensor x1_hat =
        lft::Integrate(u, x0, lft::UniformGrid(k), lft::StepRule::kEuler);
    auto q = model.Tail(x1_hat, n);
    if (!q.ok()) return q.status();
    auto e = (*exported)->Forward(bid.to(lo.device));
    if (!e.ok()) return e.status();
    ppl_lft.Add(*q, bid, bmask);
    ppl_export.Add(e->logits, bid, bmask);
    max_diff = std::max(
        max_diff, (*q - e->logits).abs().max().to(torch::kCPU).item<double>());
    if (first < keep) {
      kept.push_back(
          q->narrow(0, 0, std::min(b, keep - first)).to(torch::kCPU));
    }
  }
  lft::TensorBundle bundle;
  bundle.tensors["input_ids"] = ids;
  bundle.tensors["mask"] = mask;
  if (!kept.empty()) bundle.tensors["logits"] = torch::cat(kept, 0);
  const std::string summary = absl::StrFormat(
      "{\"block\": [%d, %d], \"k\": %d, \"solver\": \"euler\", "
      "\"sequences\": %d, \"sequence_length\": %d, \"logit_sequences\": %d, "
      "\"predicted_tokens\": %d, \"ppl_lft\": %.9g, \"ppl_export_lft\": %.9g, "
      "\"max_abs_logit_diff_export_vs_lft\": %.6g, \"device\": \"%s\", "
      "\"dtype\": \"float32\"}",
      m, n, k, count, t, keep, ppl_lft.tokens(), ppl_lft.Value(),
      ppl_export.Value(), max_diff, o.device);
  bundle.metadata["lft.dump"] = summary;
  auto bytes = lft::SerializeTensors(bundle);
  if (!bytes.ok()) return bytes.status();
  absl::Status w = lft::WriteFileAtomically(o.path, *bytes);
  if (!w.ok()) return w;
  std::printf("dump %s\n", summary.c_str());
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  absl::StatusOr<lft::Flags> flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc),
      {"teacher", "checkpoint", "k", "out", "dump-logits", "heldout", "seq",
       "max-sequences", "logit-sequences", "batch", "device"},
      {"help"});
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
  DumpOptions dump;
  if (v.count("dump-logits")) {
    dump.path = v["dump-logits"];
    if (!v.count("heldout")) return Usage("--dump-logits needs --heldout");
    dump.heldout = absl::StrSplit(v["heldout"], ',', absl::SkipEmpty());
    for (const auto& [name, target, least] :
         {std::make_tuple("seq", &dump.seq, 2),
          std::make_tuple("max-sequences", &dump.max_sequences, 1),
          std::make_tuple("logit-sequences", &dump.logit_sequences, 0),
          std::make_tuple("batch", &dump.batch, 1)}) {
      if (v.count(name) &&
          (!absl::SimpleAtoi(v[name], target) || *target < least)) {
        return Usage(
            absl::StrFormat("--%s must be an integer >= %d", name, least));
      }
    }
    dump.device = v.count("device") ? v["device"] : "cpu";
    if (dump.device != "cpu" && dump.device.rfind("cuda", 0) != 0) {
      return Usage("--device must be cpu or cuda[:N]");
    }
  } else {
    for (const char* name : {"heldout", "seq", "max-sequences",
                             "logit-sequences", "batch", "device"}) {
      if (v.count(name)) {
        return Usage(absl::StrFormat("--%s needs --dump-logits", name));
      }
    }
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
    if (!dump.path.empty()) {
      return DumpLogits(v["teacher"], *checkpoint, k, v["out"], dump);
    }
    return absl::OkStatus();
  });
  if (!s.ok()) return Fail(s.ToString());
  return 0;
}
