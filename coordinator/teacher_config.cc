#include "coordinator/teacher_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace lft {

absl::StatusOr<std::optional<TeacherShape>> ReadTeacherShape(
    const std::string& teacher_dir) {
  const std::string path = absl::StrCat(teacher_dir, "/config.json");
  std::ifstream in(path);
  if (!in) return std::optional<TeacherShape>();
  std::stringstream buf;
  buf << in.rdbuf();
  nlohmann::json j = nlohmann::json::parse(buf.str(), nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("teacher.path: ", path, " is not a JSON object"));
  }
  TeacherShape shape;
  auto it = j.find("num_hidden_layers");
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "teacher.path: ", path, " has no positive integer num_hidden_layers"));
  }
  shape.num_layers = static_cast<int>(it->get<int64_t>());
  it = j.find("max_position_embeddings");
  if (it != j.end() && it->is_number_integer() && it->get<int64_t>() > 0) {
    shape.max_position_embeddings = static_cast<int>(it->get<int64_t>());
  }
  return std::optional<TeacherShape>(shape);
}

}  // namespace lft
