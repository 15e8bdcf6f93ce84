#include "common/base/teacher_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view label, absl::string_view field,
                        absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(label, ": field \"", field, "\" ", what));
}

absl::Status ReadInt(const Json& j, absl::string_view label, const char* key,
                     bool required, int64_t* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(label, key, "is missing") : absl::OkStatus();
  }
  if (!it->is_number_integer())
    return FieldError(label, key, "must be an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ReadDouble(const Json& j, absl::string_view label, const char* key,
                        bool* found, double* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return FieldError(label, key, "must be a number");
  *out = it->get<double>();
  *found = true;
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& j, absl::string_view label, const char* key,
                      bool* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return FieldError(label, key, "must be true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

absl::StatusOr<Json> ParseObject(absl::string_view json_text,
                                 absl::string_view label) {
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label, ": not a JSON object"));
  }
  return j;
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

absl::StatusOr<NeoXConfig> ParseNeoXConfig(absl::string_view json_text,
                                           absl::string_view label) {
  LFT_ASSIGN_OR_RETURN(Json j, ParseObject(json_text, label));
  NeoXConfig c;
  auto mt = j.find("model_type");
  if (mt != j.end() && mt->is_string() &&
      mt->get<std::string>() != "gpt_neox") {
    return FieldError(label, "model_type",
                      absl::StrCat("is \"", mt->get<std::string>(),
                                   "\", expected \"gpt_neox\""));
  }
  absl::Status s;
  if (!(s = ReadInt(j, label, "vocab_size", true, &c.vocab_size)).ok())
    return s;
  if (!(s = ReadInt(j, label, "hidden_size", true, &c.hidden_size)).ok())
    return s;
  if (!(s = ReadInt(j, label, "num_hidden_layers", true, &c.num_hidden_layers))
           .ok())
    return s;
  if (!(s = ReadInt(j, label, "num_attention_heads", true,
                    &c.num_attention_heads))
           .ok())
    return s;
  if (!(s = ReadInt(j, label, "intermediate_size", true, &c.intermediate_size))
           .ok())
    return s;
  if (!(s = ReadInt(j, label, "max_position_embeddings", false,
                    &c.max_position_embeddings))
           .ok())
    return s;

  bool found = false;
  // Newest spelling wins: rope_parameters, then the flat transformers-5 keys,
  // then the original GPT-NeoX keys.
  bool pct_found = false, base_found = false;
  auto rp = j.find("rope_parameters");
  if (rp != j.end() && rp->is_object()) {
    if (!(s = ReadDouble(*rp, label, "partial_rotary_factor", &pct_found,
                         &c.rotary_pct))
             .ok())
      return s;
    if (!(s = ReadDouble(*rp, label, "rope_theta", &base_found,
                         &c.rotary_emb_base))
             .ok())
      return s;
  }
  if (!pct_found) {
    if (!(s = ReadDouble(j, label, "partial_rotary_factor", &pct_found,
                         &c.rotary_pct))
             .ok())
      return s;
  }
  if (!pct_found) {
    if (!(s = ReadDouble(j, label, "rotary_pct", &pct_found, &c.rotary_pct))
             .ok())
      return s;
  }
  if (!base_found) {
    if (!(s = ReadDouble(j, label, "rope_theta", &base_found,
                         &c.rotary_emb_base))
             .ok())
      return s;
  }
  if (!base_found) {
    if (!(s = ReadDouble(j, label, "rotary_emb_base", &base_found,
                         &c.rotary_emb_base))
             .ok())
      return s;
  }
  if (!(s = ReadDouble(j, label, "layer_norm_eps", &found, &c.layer_norm_eps))
           .ok())
    return s;
  if (!(s = ReadBool(j, label, "use_parallel_residual",
                     &c.use_parallel_residual))
           .ok())
    return s;
  if (!(s = ReadBool(j, label, "tie_word_embeddings", &c.tie_word_embeddings))
           .ok())
    return s;
  if (!(s = ReadBool(j, label, "attention_bias", &c.attention_bias)).ok())
    return s;
  auto act = j.find("hidden_act");
  if (act != j.end()) {
    if (!act->is_string())
      return FieldError(label, "hidden_act", "must be a string");
    c.hidden_act = act->get<std::string>();
  }

  if (c.vocab_size <= 0)
    return FieldError(label, "vocab_size", "must be positive");
  if (c.hidden_size <= 0)
    return FieldError(label, "hidden_size", "must be positive");
  if (c.num_hidden_layers <= 0)
    return FieldError(label, "num_hidden_layers", "must be positive");
  if (c.num_attention_heads <= 0 ||
      c.hidden_size % c.num_attention_heads != 0) {
    return FieldError(label, "num_attention_heads",
                      absl::StrCat("must divide hidden_size ", c.hidden_size));
  }
  if (c.intermediate_size <= 0)
    return FieldError(label, "intermediate_size", "must be positive");
  if (!(c.rotary_pct >= 0.0 && c.rotary_pct <= 1.0)) {
    return FieldError(label, "rotary_pct", "must lie in [0, 1]");
  }
  if (c.rotary_dims() % 2 != 0) {
    return FieldError(
        label, "rotary_pct",
        absl::StrCat("gives an odd rotary dimension ", c.rotary_dims()));
  }
  if (!(c.rotary_emb_base > 0.0))
    return FieldError(label, "rotary_emb_base", "must be positive");
  if (!(c.layer_norm_eps > 0.0))
    return FieldError(label, "layer_norm_eps", "must be positive");
  if (c.hidden_act != "gelu") {
    return FieldError(label, "hidden_act",
                      absl::StrCat("is \"", c.hidden_act,
                                   "\"; only exact \"gelu\" is supported"));
  }
  return c;
}

absl::StatusOr<NeoXConfig> ReadNeoXConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  LFT_ASSIGN_OR_RETURN(std::string text, ReadText(path));
  return ParseNeoXConfig(text, path);
}

absl::StatusOr<TeacherShape> ParseTeacherShape(absl::string_view json_text,
                                               absl::string_view label) {
  LFT_ASSIGN_OR_RETURN(Json j, ParseObject(json_text, label));
  int64_t layers = 0;
  int64_t positions = 0;
  LFT_RETURN_IF_ERROR(ReadInt(j, label, "num_hidden_layers", true, &layers));
  if (layers <= 0)
    return FieldError(label, "num_hidden_layers", "must be positive");
  LFT_RETURN_IF_ERROR(
      ReadInt(j, label, "max_position_embeddings", false, &positions));
  TeacherShape shape;
  shape.num_layers = static_cast<int>(layers);
  shape.max_position_embeddings =
      positions > 0 ? static_cast<int>(positions) : 0;
  return shape;
}

absl::StatusOr<std::optional<TeacherShape>> ReadTeacherShape(
    const std::string& teacher_dir) {
  const std::string path = absl::StrCat(teacher_dir, "/config.json");
  absl::StatusOr<std::string> text = ReadText(path);
  if (!text.ok()) return std::optional<TeacherShape>();
  LFT_ASSIGN_OR_RETURN(
      TeacherShape shape,
      ParseTeacherShape(*text, absl::StrCat("teacher.path: ", path)));
  return std::optional<TeacherShape>(shape);
}

std::vector<NeoXTensorShape> NeoXTensorShapes(const NeoXConfig& c) {
  const int64_t h = c.hidden_size, v = c.vocab_size, in = c.intermediate_size;
  std::vector<NeoXTensorShape> out = {
      {"gpt_neox.embed_in.weight", {v, h}},
      {"gpt_neox.final_layer_norm.weight", {h}},
      {"gpt_neox.final_layer_norm.bias", {h}},
  };
  if (!c.tie_word_embeddings) out.push_back({"embed_out.weight", {v, h}});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("gpt_neox.layers.", i, ".");
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "input_layernorm.bias", {h}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
    out.push_back({p + "post_attention_layernorm.bias", {h}});
    out.push_back({p + "attention.query_key_value.weight", {3 * h, h}});
    out.push_back({p + "attention.dense.weight", {h, h}});
    if (c.attention_bias) {
      out.push_back({p + "attention.query_key_value.bias", {3 * h}});
      out.push_back({p + "attention.dense.bias", {h}});
    }
    out.push_back({p + "mlp.dense_h_to_4h.weight", {in, h}});
    out.push_back({p + "mlp.dense_h_to_4h.bias", {in}});
    out.push_back({p + "mlp.dense_4h_to_h.weight", {h, in}});
    out.push_back({p + "mlp.dense_4h_to_h.bias", {h}});
  }
  return out;
}

std::string NeoXConfigToJson(const NeoXConfig& c) {
  Json j;
  j["architectures"] = {"GPTNeoXForCausalLM"};
  j["model_type"] = "gpt_neox";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["intermediate_size"] = c.intermediate_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rotary_pct"] = c.rotary_pct;
  j["rotary_emb_base"] = c.rotary_emb_base;
  // transformers 5 reads these spellings; older versions the ones above.
  j["partial_rotary_factor"] = c.rotary_pct;
  j["rope_theta"] = c.rotary_emb_base;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["use_parallel_residual"] = c.use_parallel_residual;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  j["hidden_act"] = c.hidden_act;
  return j.dump(2);
}

}  // namespace lft
