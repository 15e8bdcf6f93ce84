// Euler export; see export.h.
#include "worker/model/export.h"

#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/safetensors.h"
#include "worker/model/tensor_io.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

torch::Tensor Cpu(const torch::Tensor& t) {
  return t.detach().to(torch::kCPU, torch::kFloat).contiguous().clone();
}

void PutLayer(std::map<std::string, torch::Tensor>* out, int64_t index,
              const NeoXLayerWeights& w) {
  const std::string p = absl::StrCat("gpt_neox.layers.", index, ".");
  (*out)[p + "input_layernorm.weight"] = Cpu(w.ln1_w);
  (*out)[p + "input_layernorm.bias"] = Cpu(w.ln1_b);
  (*out)[p + "post_attention_layernorm.weight"] = Cpu(w.ln2_w);
  (*out)[p + "post_attention_layernorm.bias"] = Cpu(w.ln2_b);
  (*out)[p + "attention.query_key_value.weight"] = Cpu(w.qkv_w);
  if (w.qkv_b.defined())
    (*out)[p + "attention.query_key_value.bias"] = Cpu(w.qkv_b);
  (*out)[p + "attention.dense.weight"] = Cpu(w.dense_w);
  if (w.dense_b.defined()) (*out)[p + "attention.dense.bias"] = Cpu(w.dense_b);
  (*out)[p + "mlp.dense_h_to_4h.weight"] = Cpu(w.fc1_w);
  (*out)[p + "mlp.dense_h_to_4h.bias"] = Cpu(w.fc1_b);
  (*out)[p + "mlp.dense_4h_to_h.weight"] = Cpu(w.fc2_w);
  (*out)[p + "mlp.dense_4h_to_h.bias"] = Cpu(w.fc2_b);
}

}  // namespace

absl::StatusOr<ExportedModel> ExportEulerModel(const GptNeoX& teacher,
                                               FlowLayerImpl& flow, int64_t m,
                                               int64_t n, int64_t k) {
  const NeoXConfig& c = teacher.config();
  if (m < 0 || m >= n || n > c.num_hidden_layers || k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("export needs 0 <= m < n <= ", c.num_hidden_layers,
                     " and k >= 1; got m ", m, ", n ", n, ", k ", k));
  }
  if (!c.use_parallel_residual) {
    return absl::FailedPreconditionError(
        "export: a sequential-residual teacher's Euler step is not a GPT-NeoX "
        "layer");
  }
  return GuardTorch("ExportEulerModel", [&]() -> absl::StatusOr<ExportedModel> {
    torch::NoGradGuard ng;
    ExportedModel out;
    out.config = c;
    out.config.num_hidden_layers = c.num_hidden_layers - (n - m) + k;
    out.tensors["gpt_neox.embed_in.weight"] = Cpu(teacher.embed_in());
    out.tensors["gpt_neox.final_layer_norm.weight"] =
        Cpu(teacher.final_ln_weight());
    out.tensors["gpt_neox.final_layer_norm.bias"] =
        Cpu(teacher.final_ln_bias());
    if (!c.tie_word_embeddings)
      out.tensors["embed_out.weight"] = Cpu(teacher.embed_out());
    int64_t index = 0;
    for (int64_t i = 0; i < m; ++i)
      PutLayer(&out.tensors, index++, teacher.layer(i));
    const NeoXLayerWeights& w = flow.weights();
    for (int64_t step = 0; step < k; ++step) {
      const double t = static_cast<double>(step) / static_cast<double>(k);
      const double d = 1.0 / static_cast<double>(k);
      torch::Tensor f = Cpu(
          flow.Factors(torch::full({1}, t, w.ln1_w.options()))[0]);  // [6, H]
      torch::Tensor g1 = f[0], b1 = f[1], a1 = f[2] * d, g2 = f[3], b2 = f[4],
                    a2 = f[5] * d;
      NeoXLayerWeights e;
      e.ln1_w = Cpu(w.ln1_w) * (1 + g1);
      e.ln1_b = Cpu(w.ln1_b) * (1 + g1) + b1;
      e.ln2_w = Cpu(w.ln2_w) * (1 + g2);
      e.ln2_b = Cpu(w.ln2_b) * (1 + g2) + b2;
      e.qkv_w = Cpu(w.qkv_w);
      if (w.qkv_b.defined()) e.qkv_b = Cpu(w.qkv_b);
      e.dense_w = Cpu(w.dense_w) * a1.unsqueeze(1);
      if (w.dense_b.defined()) e.dense_b = Cpu(w.dense_b) * a1;
      e.fc1_w = Cpu(w.fc1_w);
      e.fc1_b = Cpu(w.fc1_b);
      e.fc2_w = Cpu(w.fc2_w) * a2.unsqueeze(1);
      e.fc2_b = Cpu(w.fc2_b) * a2;
      PutLayer(&out.tensors, index++, e);
    }
    for (int64_t i = n; i < c.num_hidden_layers; ++i) {
      PutLayer(&out.tensors, index++, teacher.layer(i));
    }
    return out;
  });
}

absl::Status WriteExportedModel(const ExportedModel& model,
                                const std::string& dir) {
  LFT_RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json",
                                          NeoXConfigToJson(model.config)));
  return SaveTensors(model.tensors, dir + "/model.safetensors");
}

}  // namespace lft
