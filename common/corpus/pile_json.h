// A validating single-pass JSON parser for one Pile line that extracts only
// "text" and "meta"."pile_set_name", without building a DOM (several times
// faster than nlohmann::json::parse on text-heavy lines, which bounded the
// reader). Accepts exactly RFC 8259 JSON: strings must be valid UTF-8 with
// no raw control characters, \u escapes must pair surrogates, numbers follow
// the grammar, nothing but whitespace may follow the value, nesting is
// limited to 512 levels. Duplicate keys: the last one wins (as nlohmann).
#ifndef LFT_COMMON_CORPUS_PILE_JSON_H_
#define LFT_COMMON_CORPUS_PILE_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace lft {

// Parses `line`. On success returns "" and sets *text and *pile_set_name
// (empty when meta or pile_set_name is absent or not a string). On failure
// returns a message: "invalid JSON at byte N: ...", "line is not a JSON
// object", or "missing string field \"text\"".
std::string ParsePileJsonLine(absl::string_view line, std::string* text,
                              std::string* pile_set_name);

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_PILE_JSON_H_
