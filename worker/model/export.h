// Export of a k-step Euler latent flow model as a plain GPT-NeoX checkpoint.
//
// With a fixed time grid t_i = i / k and d = 1 / k, one Euler step of the
// flow layer (parallel form) is
//   x + d alpha1 * attn(LN1(x)(1 + gamma1) + beta1)
//     + d alpha2 * mlp(LN2(x)(1 + gamma2) + beta2),
// an ordinary parallel GPT-NeoX layer once the AdaLN factors (constants at a
// fixed t) are folded: LN weight w(1 + gamma), LN bias b(1 + gamma) + beta,
// and the output rows of attention.dense / dense_4h_to_h (and their biases)
// scaled by d alpha. So the compressed model is a GPT-NeoX with
// L - (n - m) + k layers that HF transformers and GptNeoX load unchanged.
// The sequential residual form does not fold (the MLP sees x + alpha1 attn,
// not x + d alpha1 attn) and is refused.
#ifndef LFT_WORKER_MODEL_EXPORT_H_
#define LFT_WORKER_MODEL_EXPORT_H_

#include <torch/torch.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "worker/model/flow_layer.h"
#include "worker/model/gpt_neox.h"

namespace lft {

struct ExportedModel {
  NeoXConfig config;
  std::map<std::string, torch::Tensor> tensors;  // HF names, float32, CPU
};

// Folds `flow` (trained for block [m, n) of `teacher`) into k Euler layers.
// InvalidArgument for a bad block or k < 1; FailedPrecondition for a
// sequential-residual teacher. (attention_bias=false is fine: the shifts fold
// into LayerNorm biases and a zero dense bias stays zero when scaled.)
absl::StatusOr<ExportedModel> ExportEulerModel(const GptNeoX& teacher,
                                               FlowLayerImpl& flow, int64_t m,
                                               int64_t n, int64_t k);

// ExportEulerModel, then writes config.json and model.safetensors into `dir`
// (which must exist).
absl::Status WriteExportedModel(const ExportedModel& model,
                                const std::string& dir);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_EXPORT_H_
