#include "lftctl/job_spec_yaml.h"

#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/job_spec.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace lft {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using Json = nlohmann::json;

absl::Status At(const YAML::Mark& mark, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(
      "line ", mark.line + 1, ", column ", mark.column + 1, ": ", message));
}

std::string Join(const std::string& path, const std::string& key) {
  return path.empty() ? key : absl::StrCat(path, ".", key);
}

// The field named `key` (proto name or JSON name), or null.
const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  const FieldDescriptor* f = d->FindFieldByName(key);
  if (f != nullptr) return f;
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

std::string KnownFields(const Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i)
    names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

absl::StatusOr<Json> ConvertMessage(const YAML::Node& node, const Descriptor* d,
                                    const std::string& path);

// One value (not a list) of field `f`.
absl::StatusOr<Json> ConvertValue(const YAML::Node& node,
                                  const FieldDescriptor* f,
                                  const std::string& path) {
  if (node.IsNull()) return Json(nullptr);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return ConvertMessage(node, f->message_type(), path);
  }
  if (!node.IsScalar()) {
    return At(node.Mark(),
              absl::StrCat(path, ": expected a single value, got ",
                           node.IsSequence() ? "a list" : "a map"));
  }
  const std::string& text = node.Scalar();
  auto bad = [&](absl::string_view what) {
    return At(node.Mark(),
              absl::StrCat(path, ": expected ", what, ", got \"", text, "\""));
  };
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(text, &v)) return bad("an integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_INT32 &&
          (v < INT32_MIN || v > INT32_MAX)) {
        return bad("a 32-bit integer");
      }
      return Json(v);
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v = 0;
      if (!absl::SimpleAtoi(text, &v)) return bad("a non-negative integer");
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_UINT32 && v > UINT32_MAX) {
        return bad("a 32-bit non-negative integer");
      }
      return Json(v);
    }
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double v = 0;
      if (!absl::SimpleAtod(text, &v)) return bad("a number");
      return Json(v);
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      const std::string lower = absl::AsciiStrToLower(text);
      if (lower == "true") return Json(true);
      if (lower == "false") return Json(false);
      return bad("true or false");
    }
    case FieldDescriptor::CPPTYPE_ENUM:
    case FieldDescriptor::CPPTYPE_STRING:
      // Enum names are checked by the JSON parser; strings stay as written
      // (a name like 123 or true is still a string).
      return Json(text);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      break;
  }
  return bad("a value");
}

absl::StatusOr<Json> ConvertField(const YAML::Node& node,
                                  const FieldDescriptor* f,
                                  const std::string& path) {
  if (f->is_map()) {
    if (!node.IsMap())
      return At(node.Mark(), absl::StrCat(path, ": expected a map"));
    Json out = Json::object();
    const FieldDescriptor* value = f->message_type()->map_value();
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      auto v = ConvertValue(kv.second, value, Join(path, key));
      if (!v.ok()) return v.status();
      out[key] = *std::move(v);
    }
    return out;
  }
  if (!f->is_repeated()) return ConvertValue(node, f, path);
  if (node.IsNull()) return Json::array();
  if (!node.IsSequence()) {
    return At(node.Mark(), absl::StrCat(path, ": expected a list (- item)"));
  }
  Json out = Json::array();
  for (size_t i = 0; i < node.size(); ++i) {
    auto v = ConvertValue(node[i], f, absl::StrCat(path, "[", i, "]"));
    if (!v.ok()) return v.status();
    out.push_back(*std::move(v));
  }
  return out;
}

absl::StatusOr<Json> ConvertMessage(const YAML::Node& node, const Descriptor* d,
                                    const std::string& path) {
  if (!node.IsMap()) {
    return At(node.Mark(),
              absl::StrCat(path.empty() ? "the spec" : path,
                           ": expected a map of fields (key: value)"));
  }
  Json out = Json::object();
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      return At(kv.first.Mark(), "a field name must be a plain word");
    }
    const std::string key = kv.first.Scalar();
    const FieldDescriptor* f = FindField(d, key);
    if (f == nullptr) {
      return At(kv.first.Mark(),
                absl::StrCat(Join(path, key), ": unknown field; ", d->name(),
                             " has ", KnownFields(d)));
    }
    if (out.contains(key)) {
      return At(kv.first.Mark(),
                absl::StrCat(Join(path, key), ": field given twice"));
    }
    auto v = ConvertField(kv.second, f, Join(path, key));
    if (!v.ok()) return v.status();
    out[key] = *std::move(v);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> YamlToProtoJson(absl::string_view yaml,
                                            const Descriptor* descriptor) {
  // yaml-cpp reports errors by throwing; nothing may escape this library.
  try {
    const YAML::Node root = YAML::Load(std::string(yaml));
    if (!root.IsDefined() || root.IsNull()) {
      return absl::InvalidArgumentError("the YAML spec is empty");
    }
    auto json = ConvertMessage(root, descriptor, "");
    if (!json.ok()) return json.status();
    return json->dump();
  } catch (const YAML::Exception& e) {
    return At(e.mark, e.msg);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the YAML spec: ", e.what()));
  }
}

absl::StatusOr<lft::v1::JobSpec> ParseJobSpecYaml(absl::string_view yaml) {
  auto json = YamlToProtoJson(yaml, lft::v1::JobSpec::descriptor());
  if (!json.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("job spec is not valid YAML for lft.v1.JobSpec: ",
                     json.status().message()));
  }
  return ParseJobSpecJson(*json);
}

bool IsYamlSpec(absl::string_view path, absl::string_view content) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) {
    return true;
  }
  if (absl::EndsWith(lower, ".json")) return false;
  const absl::string_view body = absl::StripLeadingAsciiWhitespace(content);
  return !absl::StartsWith(body, "{");
}

absl::StatusOr<lft::v1::JobSpec> ParseJobSpecFileContent(
    absl::string_view path, absl::string_view content) {
  return IsYamlSpec(path, content) ? ParseJobSpecYaml(content)
                                   : ParseJobSpecJson(content);
}

}  // namespace lft
