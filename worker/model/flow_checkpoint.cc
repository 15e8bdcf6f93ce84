#include "worker/model/flow_checkpoint.h"

#include <cstdio>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

constexpr char kFormat[] = "lft-flow-checkpoint-1";
constexpr char kWeights[] = "weights/";
constexpr char kOptimizer[] = "optimizer/";

absl::Status MissingOrBad(absl::string_view key, absl::string_view value) {
  return absl::InvalidArgumentError(absl::StrCat("flow checkpoint: metadata \"",
                                                 key, "\" = \"", value,
                                                 "\" is missing or malformed"));
}

template <typename T>
absl::Status GetNumber(const std::map<std::string, std::string>& md,
                       const std::string& key, T* out) {
  auto it = md.find(key);
  const std::string value = it == md.end() ? "" : it->second;
  if (it == md.end() || !absl::SimpleAtoi(value, out))
    return MissingOrBad(key, value);
  return absl::OkStatus();
}

absl::Status GetString(const std::map<std::string, std::string>& md,
                       const std::string& key, std::string* out) {
  auto it = md.find(key);
  if (it == md.end() || it->second.empty()) return MissingOrBad(key, "");
  *out = it->second;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SerializeFlowCheckpoint(
    const FlowCheckpoint& checkpoint) {
  const FlowCheckpointHeader& h = checkpoint.header;
  TensorBundle b;
  for (const auto& [name, t] : checkpoint.weights)
    b.tensors[absl::StrCat(kWeights, name)] = t;
  for (const auto& [name, t] : checkpoint.optimizer)
    b.tensors[absl::StrCat(kOptimizer, name)] = t;
  b.metadata = {
      {"lft.format", kFormat},
      {"lft.first_layer", absl::StrCat(h.first_layer)},
      {"lft.end_layer", absl::StrCat(h.end_layer)},
      {"lft.method", h.method},
      {"lft.init", h.init},
      {"lft.time_embed_dim", absl::StrCat(h.time_embed_dim)},
      {"lft.step", absl::StrCat(h.step)},
      {"lft.tokens", absl::StrCat(h.tokens)},
      {"lft.epoch", absl::StrCat(h.epoch)},
      {"lft.blocks_consumed", absl::StrCat(h.blocks_consumed)},
      {"lft.seed", absl::StrCat(h.seed)},
      {"lft.world_size", absl::StrCat(h.world_size)},
  };
  std::vector<std::string> losses;
  losses.reserve(h.losses.size());
  for (double l : h.losses) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.9g", l);
    losses.emplace_back(buf);
  }
  b.metadata["lft.losses"] = absl::StrJoin(losses, ",");
  return SerializeTensors(b);
}

absl::StatusOr<FlowCheckpoint> ParseFlowCheckpoint(absl::string_view bytes) {
  LFT_ASSIGN_OR_RETURN(TensorBundle b, ParseTensors(bytes));
  const auto& md = b.metadata;
  auto format = md.find("lft.format");
  if (format == md.end() || format->second != kFormat) {
    return absl::InvalidArgumentError(
        absl::StrCat("not an lft flow checkpoint (metadata lft.format is \"",
                     format == md.end() ? "" : format->second,
                     "\", expected \"", kFormat, "\")"));
  }
  FlowCheckpoint c;
  FlowCheckpointHeader& h = c.header;
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.first_layer", &h.first_layer));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.end_layer", &h.end_layer));
  LFT_RETURN_IF_ERROR(GetString(md, "lft.method", &h.method));
  LFT_RETURN_IF_ERROR(GetString(md, "lft.init", &h.init));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.time_embed_dim", &h.time_embed_dim));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.step", &h.step));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.tokens", &h.tokens));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.epoch", &h.epoch));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.blocks_consumed", &h.blocks_consumed));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.seed", &h.seed));
  LFT_RETURN_IF_ERROR(GetNumber(md, "lft.world_size", &h.world_size));
  auto losses = md.find("lft.losses");
  if (losses != md.end() && !losses->second.empty()) {
    for (absl::string_view part : absl::StrSplit(losses->second, ',')) {
      double v = 0;
      if (!absl::SimpleAtod(part, &v)) return MissingOrBad("lft.losses", part);
      h.losses.push_back(v);
    }
  }
  for (auto& [name, t] : b.tensors) {
    if (absl::StartsWith(name, kWeights)) {
      c.weights[name.substr(sizeof(kWeights) - 1)] = t;
    } else if (absl::StartsWith(name, kOptimizer)) {
      c.optimizer[name.substr(sizeof(kOptimizer) - 1)] = t;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flow checkpoint: unexpected tensor \"", name,
                       "\" (expected weights/... or optimizer/...)"));
    }
  }
  if (h.end_layer <= h.first_layer || h.first_layer < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("flow checkpoint: block [", h.first_layer, ", ",
                     h.end_layer, ") is empty or negative"));
  }
  return c;
}

std::map<std::string, torch::Tensor> FlowLayerWeights(FlowLayerImpl& layer) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : layer.named_parameters()) {
    out[p.key()] = p.value().detach().to(torch::kCPU, torch::kFloat).clone();
  }
  return out;
}

absl::StatusOr<FlowLayer> RestoreFlowLayer(const GptNeoX& teacher,
                                           const FlowCheckpoint& checkpoint,
                                           FlowLayerOptions options) {
  const FlowCheckpointHeader& h = checkpoint.header;
  const int64_t layers = teacher.config().num_hidden_layers;
  if (h.first_layer < 0 || h.end_layer > layers ||
      h.first_layer >= h.end_layer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "flow checkpoint is for block [", h.first_layer, ", ", h.end_layer,
        "), outside this teacher's ", layers, " layers"));
  }
  if (h.init != "teacher" && h.init != "adaln-zero") {
    return absl::InvalidArgumentError(absl::StrCat(
        "flow checkpoint: init \"", h.init, "\" is not teacher or adaln-zero"));
  }
  options.init =
      h.init == "adaln-zero" ? FlowInit::kAdaLnZero : FlowInit::kTeacherLayer;
  options.time_embed_dim = h.time_embed_dim;
  return GuardTorch("RestoreFlowLayer", [&]() -> absl::StatusOr<FlowLayer> {
    FlowLayer layer(teacher.layer(h.first_layer), teacher.layer_shape(),
                    options);
    std::set<std::string> seen;
    torch::NoGradGuard no_grad;
    for (auto& p : layer->named_parameters()) {
      auto it = checkpoint.weights.find(p.key());
      if (it == checkpoint.weights.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flow checkpoint has no weight \"", p.key(), "\""));
      }
      if (it->second.sizes() != p.value().sizes()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flow checkpoint weight \"", p.key(), "\" has shape ",
            c10::str(it->second.sizes()), " but this teacher's layer needs ",
            c10::str(p.value().sizes()),
            " (a checkpoint of another teacher?)"));
      }
      p.value().copy_(it->second);
      seen.insert(p.key());
    }
    for (const auto& [name, t] : checkpoint.weights) {
      if (!seen.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "flow checkpoint has an unexpected weight \"", name, "\""));
      }
    }
    return layer;
  });
}

}  // namespace lft
