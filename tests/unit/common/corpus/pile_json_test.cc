#include "common/corpus/pile_json.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

using ::testing::HasSubstr;

// nlohmann's verdict and extraction, the reference.
std::string Reference(const std::string& line, std::string* text,
                      std::string* name) {
  text->clear();
  name->clear();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    return "invalid JSON";
  }
  if (!j.is_object()) return "line is not a JSON object";
  auto t = j.find("text");
  if (t == j.end() || !t->is_string()) return "missing string field \"text\"";
  *text = t->get<std::string>();
  auto m = j.find("meta");
  if (m != j.end() && m->is_object()) {
    auto n = m->find("pile_set_name");
    if (n != m->end() && n->is_string()) *name = n->get<std::string>();
  }
  return "";
}

TEST(PileJsonTest, AgreesWithNlohmann) {
  std::vector<std::string> cases = {
      R"({"text": "hello", "meta": {"pile_set_name": "Set"}})",
      R"({"meta": {"pile_set_name": "Set", "x": [1, {"y": null}]}, "text": "t"})",
      R"(  {"text":"a\"b\\c\/d\b\f\n\r\t"}  )",
      R"({"text": "\u00e9\u65e5\ud83d\ude00 caf\u00E9"})",
      "{\"text\": \"raw caf\xC3\xA9 \xF0\x9F\x98\x80 \xEF\xBF\xBD \x7F\"}",
      R"({"text": "x", "text": "last wins"})",
      R"({"text": "x", "meta": {"pile_set_name": 5}})",
      R"({"text": "x", "meta": "notobject"})",
      R"({"text": "x", "meta": {"pile_set_name": "a"}, "meta": {}})",
      R"({"text": "", "n": [-0, 1.5e3, -2E-2, 10, 0.25, true, false, null]})",
      R"({"text": 5})",
      R"({"other": "x"})",
      R"([1, 2])",
      R"("just a string")",
      R"({})",
      R"({"text": "unterminated)",
      R"({"text": "bad escape \q"})",
      R"({"text": "lone \ud800 surrogate"})",
      R"({"text": "lone \udc00 low"})",
      R"({"text": "bad hex \u12G4"})",
      "{\"text\": \"control \x01 char\"}",
      "{\"text\": \"bad utf8 \xC3\x28\"}",
      "{\"text\": \"overlong \xC0\xAF\"}",
      R"({"text": "x"} trailing)",
      R"({"text": "x",})",
      R"({"text" "x"})",
      R"({"text": 01})",
      R"({"text": "x", "n": 1.})",
      R"({"text": "x", "n": -})",
      R"({"text": "x", "n": tru})",
      R"({'text': 'x'})",
      R"({"text": "x")",
      "",
      "   ",
  };
  for (const std::string& line : cases) {
    std::string text, name, ref_text, ref_name;
    std::string error = ParsePileJsonLine(line, &text, &name);
    std::string ref = Reference(line, &ref_text, &ref_name);
    if (ref == "invalid JSON") {
      EXPECT_THAT(error, HasSubstr("invalid JSON at byte")) << line;
    } else {
      EXPECT_EQ(error, ref) << line;
    }
    if (ref.empty()) {
      EXPECT_EQ(text, ref_text) << line;
      EXPECT_EQ(name, ref_name) << line;
    }
  }
}

TEST(PileJsonTest, DeepNestingIsAnErrorNotACrash) {
  std::string deep = "{\"text\": \"x\", \"a\": " + std::string(100000, '[') +
                     std::string(100000, ']') + "}";
  std::string text, name;
  EXPECT_THAT(ParsePileJsonLine(deep, &text, &name), HasSubstr("nesting"));
}

}  // namespace
}  // namespace lft
