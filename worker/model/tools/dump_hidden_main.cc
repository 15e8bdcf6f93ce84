// lft-dump-hidden: runs our GPT-NeoX on given token ids and writes every
// hidden state and the logits to safetensors, for comparison with HF
// transformers (tests/gpu/hf_compare.py).
//
//   lft-dump-hidden MODEL_DIR IDS.safetensors OUT.safetensors [f32|bf16]
//   [cpu|cuda]
//
// IDS.safetensors holds "input_ids" I64 [B, T]. OUT holds "hidden_states.<i>"
// (i = 0..L, HF's list; F32) and "logits" (F32 [B, T, V]).
#include <cstdio>
#include <string>
#include <vector>

#include "common/base/flags.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"

namespace {

constexpr char kSynopsis[] =
    "lft-dump-hidden MODEL_DIR IDS.safetensors OUT.safetensors [f32|bf16] "
    "[cpu|cuda]";

const std::vector<lft::FlagSpec>& DumpHiddenFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"help", "",
           "print this text and exit (arguments: the teacher directory, "
           "input_ids I64 [B, T], the output file, compute dtype (default "
           "f32), device (default cpu))"},
      };
  return *flags;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), DumpHiddenFlags());
  const std::string usage = lft::Flags::Usage(kSynopsis, DumpHiddenFlags());
  if (flags.ok() && flags->Has("help")) {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  if (!flags.ok() || flags->positional().size() < 3 ||
      flags->positional().size() > 5) {
    std::fprintf(stderr, "lft-dump-hidden: %s\n\n%s",
                 flags.ok() ? "needs 3 to 5 arguments"
                            : std::string(flags.status().message()).c_str(),
                 usage.c_str());
    return 2;
  }
  const std::vector<std::string>& args = flags->positional();
  lft::NeoXLoadOptions lo;
  const std::string dtype = args.size() > 3 ? args[3] : "f32";
  const std::string device = args.size() > 4 ? args[4] : "cpu";
  if (dtype == "bf16") {
    lo.dtype = torch::kBFloat16;
  } else if (dtype != "f32") {
    std::fprintf(stderr, "dtype must be f32 or bf16\n");
    return 2;
  }
  if (device == "cuda") {
    lo.device = torch::Device(torch::kCUDA);
  } else if (device != "cpu") {
    std::fprintf(stderr, "device must be cpu or cuda\n");
    return 2;
  }
  auto model = lft::GptNeoX::Load(args[0], lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto ids = lft::LoadTensors(args[1]);
  if (!ids.ok() || !ids->count("input_ids")) {
    std::fprintf(stderr, "%s: needs an input_ids tensor\n", args[1].c_str());
    return 1;
  }
  auto out = (*model)->Forward(ids->at("input_ids"));
  if (!out.ok()) {
    std::fprintf(stderr, "%s\n", out.status().ToString().c_str());
    return 1;
  }
  std::map<std::string, torch::Tensor> dump;
  for (size_t i = 0; i < out->hidden_states.size(); ++i) {
    dump["hidden_states." + std::to_string(i)] =
        out->hidden_states[i].to(torch::kFloat);
  }
  dump["logits"] = out->logits;
  dump["input_ids"] = ids->at("input_ids");
  auto s = lft::SaveTensors(dump, args[2]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%zu hidden states)\n", args[2].c_str(),
              out->hidden_states.size());
  return 0;
}
