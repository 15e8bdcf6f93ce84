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

#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s MODEL_DIR IDS.safetensors OUT.safetensors "
                 "[f32|bf16] [cpu|cuda]\n",
                 argv[0]);
    return 2;
  }
  lft::NeoXLoadOptions lo;
  const std::string dtype = argc > 4 ? argv[4] : "f32";
  const std::string device = argc > 5 ? argv[5] : "cpu";
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
  auto model = lft::GptNeoX::Load(argv[1], lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  auto ids = lft::LoadTensors(argv[2]);
  if (!ids.ok() || !ids->count("input_ids")) {
    std::fprintf(stderr, "%s: needs an input_ids tensor\n", argv[2]);
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
  auto s = lft::SaveTensors(dump, argv[3]);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s (%zu hidden states)\n", argv[3],
              out->hidden_states.size());
  return 0;
}
