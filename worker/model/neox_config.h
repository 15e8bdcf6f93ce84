// GPT-NeoX hyper-parameters as read from an HF `config.json`. Torch-free, so
// coordinator code can validate a teacher directory without LibTorch.
#ifndef LFT_WORKER_MODEL_NEOX_CONFIG_H_
#define LFT_WORKER_MODEL_NEOX_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lft {

struct NeoXConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 2048;
  double rotary_pct = 1.0;           // a.k.a. partial_rotary_factor
  double rotary_emb_base = 10000.0;  // a.k.a. rope_theta
  double layer_norm_eps = 1e-5;
  bool use_parallel_residual = true;
  bool tie_word_embeddings = false;
  bool attention_bias = true;
  std::string hidden_act = "gelu";

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // HF: int(head_size * rotary_pct).
  int64_t rotary_dims() const {
    return static_cast<int64_t>(static_cast<double>(head_dim()) * rotary_pct);
  }
};

// Parses the text of an HF GPT-NeoX config.json. Accepts the old key spellings
// (rotary_pct, rotary_emb_base) and the transformers-5 ones
// (partial_rotary_factor, rope_theta, or rope_parameters: {rope_theta,
// partial_rotary_factor}). InvalidArgument, naming `label` and the field, if
// the JSON is malformed, a required field is missing or has the wrong type, a
// value is out of range (hidden_size not divisible by heads, rotary_pct
// outside [0, 1], odd rotary dims) or hidden_act is not exact "gelu".
absl::StatusOr<NeoXConfig> ParseNeoXConfig(
    absl::string_view json_text, absl::string_view label = "config.json");

// Reads and parses `<dir>/config.json`. NotFound if the file is missing.
absl::StatusOr<NeoXConfig> ReadNeoXConfig(const std::string& dir);

// The config as HF transformers writes it (old key spellings), for export.
std::string NeoXConfigToJson(const NeoXConfig& config);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_NEOX_CONFIG_H_
