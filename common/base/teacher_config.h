// The one parser of a teacher's HF `config.json`: the GPT-NeoX
// hyper-parameters the worker builds its model from, and the shape the
// coordinator validates a JobSpec against. Torch-free; thread-safe (pure
// functions).
#ifndef LFT_COMMON_BASE_TEACHER_CONFIG_H_
#define LFT_COMMON_BASE_TEACHER_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/job_spec.h"

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

// The part of a config.json that JobSpec validation needs: num_hidden_layers
// (required, positive) and max_position_embeddings (optional; 0 when absent
// or not positive). InvalidArgument naming `label` and the field otherwise.
absl::StatusOr<TeacherShape> ParseTeacherShape(absl::string_view json_text,
                                               absl::string_view label);

// The shape in `<teacher_dir>/config.json`. std::nullopt if the file does not
// exist or cannot be read here (the teacher may live on the workers only);
// InvalidArgument naming "teacher.path:", the file and the field if it exists
// but is malformed.
absl::StatusOr<std::optional<TeacherShape>> ReadTeacherShape(
    const std::string& teacher_dir);

// The floating-point tensors a GPT-NeoX checkpoint of `config` holds, with
// their shapes, as HF's GPTNeoXForCausalLM names them (the names and shapes
// worker/model/gpt_neox.cc loads): embeddings, every layer, final norm and,
// unless the embeddings are tied, the output projection.
struct NeoXTensorShape {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<NeoXTensorShape> NeoXTensorShapes(const NeoXConfig& config);

// The config as HF transformers writes it (old key spellings), for export.
std::string NeoXConfigToJson(const NeoXConfig& config);

}  // namespace lft

#endif  // LFT_COMMON_BASE_TEACHER_CONFIG_H_
