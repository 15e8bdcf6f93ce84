#include "common/corpus/pile_json.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/text/unicode.h"

namespace lft {
namespace {

constexpr int kMaxDepth = 512;

class Parser {
 public:
  explicit Parser(absl::string_view s)
      : p_(reinterpret_cast<const unsigned char*>(s.data())),
        begin_(p_),
        end_(p_ + s.size()) {}

  std::string error;

  bool Fail(absl::string_view what) {
    if (error.empty()) {
      error = absl::StrCat("invalid JSON at byte ", p_ - begin_, ": ", what);
    }
    return false;
  }

  void SkipSpace() {
    while (p_ < end_ &&
           (*p_ == ' ' || *p_ == '\n' || *p_ == '\t' || *p_ == '\r')) {
      ++p_;
    }
  }
  bool AtEnd() {
    SkipSpace();
    return p_ == end_;
  }
  int Peek() {
    SkipSpace();
    return p_ < end_ ? *p_ : -1;
  }

  // Parses a string at p_ (which is '"'); appends it to *out when non-null.
  bool String(std::string* out) {
    ++p_;  // opening quote
    while (true) {
      const unsigned char* run = p_;
      while (p_ < end_ && *p_ != '"' && *p_ != '\\' && *p_ >= 0x20 &&
             *p_ < 0x80) {
        ++p_;
      }
      if (out != nullptr)
        out->append(reinterpret_cast<const char*>(run), p_ - run);
      if (p_ == end_) return Fail("unterminated string");
      unsigned char c = *p_;
      if (c == '"') {
        ++p_;
        return true;
      }
      if (c < 0x20) return Fail("control character in string");
      if (c >= 0x80) {
        size_t pos = 0;
        absl::string_view rest(reinterpret_cast<const char*>(p_), end_ - p_);
        char32_t cp = DecodeUtf8(rest, &pos);
        if (cp == 0xFFFD && !(pos == 3 && rest[0] == '\xEF' &&
                              rest[1] == '\xBF' && rest[2] == '\xBD')) {
          return Fail("invalid UTF-8 in string");
        }
        if (out != nullptr) out->append(rest.data(), pos);
        p_ += pos;
        continue;
      }
      // Escape.
      if (end_ - p_ < 2) return Fail("unterminated escape");
      unsigned char e = p_[1];
      p_ += 2;
      char simple = 0;
      switch (e) {
        case '"':
          simple = '"';
          break;
        case '\\':
          simple = '\\';
          break;
        case '/':
          simple = '/';
          break;
        case 'b':
          simple = '\b';
          break;
        case 'f':
          simple = '\f';
          break;
        case 'n':
          simple = '\n';
          break;
        case 'r':
          simple = '\r';
          break;
        case 't':
          simple = '\t';
          break;
        case 'u': {
          char32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            char32_t low;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') {
              return Fail("high surrogate not followed by \\u low surrogate");
            }
            p_ += 2;
            if (!Hex4(&low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) {
              return Fail("high surrogate not followed by a low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Fail("lone low surrogate");
          }
          if (out != nullptr) AppendUtf8(cp, out);
          continue;
        }
        default:
          return Fail("invalid escape");
      }
      if (out != nullptr) out->push_back(simple);
    }
  }

  bool Hex4(char32_t* cp) {
    if (end_ - p_ < 4) return Fail("truncated \\u escape");
    char32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned char c = p_[i];
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) return Fail("bad hex digit in \\u escape");
      v = v * 16 + static_cast<char32_t>(d);
    }
    p_ += 4;
    *cp = v;
    return true;
  }

  bool Digits() {
    if (p_ == end_ || *p_ < '0' || *p_ > '9') return Fail("expected digit");
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return true;
  }

  bool Number() {
    if (*p_ == '-') ++p_;
    if (p_ == end_) return Fail("truncated number");
    if (*p_ == '0') {
      ++p_;
    } else if (!Digits()) {
      return false;
    }
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!Digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!Digits()) return false;
    }
    return true;
  }

  bool Literal(const char* word) {
    size_t n = std::strlen(word);
    if (static_cast<size_t>(end_ - p_) < n || std::memcmp(p_, word, n) != 0) {
      return Fail("invalid literal");
    }
    p_ += n;
    return true;
  }

  // Kinds of the captured value, for the "text" field check.
  enum Kind { kNone, kString, kOther };

  // Parses any value. When `capture` is non-null and the value is a string,
  // it is stored there and *kind = kString.
  bool Value(int depth, std::string* capture, Kind* kind) {
    if (kind != nullptr) *kind = kOther;
    switch (Peek()) {
      case '"':
        if (capture != nullptr) {
          capture->clear();
          if (kind != nullptr) *kind = kString;
        }
        return String(capture);
      case '{':
        return Object(depth + 1, nullptr, nullptr);
      case '[':
        return Array(depth + 1);
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      case -1:
        return Fail("unexpected end of input");
      default:
        if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) return Number();
        return Fail("unexpected character");
    }
  }

  bool Array(int depth) {
    if (depth > kMaxDepth) return Fail("nesting deeper than 512");
    ++p_;
    if (Peek() == ']') {
      ++p_;
      return true;
    }
    while (true) {
      if (!Value(depth, nullptr, nullptr)) return false;
      int c = Peek();
      if (c == ',') {
        ++p_;
        continue;
      }
      if (c == ']') {
        ++p_;
        return true;
      }
      return Fail("expected ',' or ']'");
    }
  }

  // An object. At the top level (text != nullptr) captures "text" and
  // "meta"; inside "meta" (name != nullptr) captures "pile_set_name".
  bool Object(int depth, std::string* text, Kind* text_kind,
              std::string* name = nullptr, Kind* name_kind = nullptr,
              std::string* meta_name = nullptr,
              Kind* meta_name_kind = nullptr) {
    if (depth > kMaxDepth) return Fail("nesting deeper than 512");
    ++p_;
    if (Peek() == '}') {
      ++p_;
      return true;
    }
    std::string key;
    while (true) {
      if (Peek() != '"') return Fail("expected string key");
      key.clear();
      if (!String(&key)) return false;
      if (Peek() != ':') return Fail("expected ':'");
      ++p_;
      if (text != nullptr && key == "text") {
        if (!Value(depth, text, text_kind)) return false;
      } else if (text != nullptr && key == "meta" && Peek() == '{') {
        Kind k = kNone;
        if (!Object(depth + 1, nullptr, nullptr, meta_name, &k)) return false;
        if (meta_name_kind != nullptr) *meta_name_kind = k;
      } else if (text != nullptr && key == "meta") {
        if (!Value(depth, nullptr, nullptr)) return false;
        if (meta_name_kind != nullptr) *meta_name_kind = kNone;
      } else if (name != nullptr && key == "pile_set_name") {
        if (!Value(depth, name, name_kind)) return false;
      } else {
        if (!Value(depth, nullptr, nullptr)) return false;
      }
      int c = Peek();
      if (c == ',') {
        ++p_;
        continue;
      }
      if (c == '}') {
        ++p_;
        return true;
      }
      return Fail("expected ',' or '}'");
    }
  }

  const unsigned char* p_;
  const unsigned char* begin_;
  const unsigned char* end_;
};

}  // namespace

std::string ParsePileJsonLine(absl::string_view line, std::string* text,
                              std::string* pile_set_name) {
  Parser parser(line);
  text->clear();
  pile_set_name->clear();
  int first = parser.Peek();
  if (first != '{') {
    // Validate anyway so that garbage is reported as invalid JSON.
    if (!parser.Value(0, nullptr, nullptr)) return parser.error;
    if (!parser.AtEnd()) {
      parser.Fail("trailing characters");
      return parser.error;
    }
    return "line is not a JSON object";
  }
  Parser::Kind text_kind = Parser::kNone, name_kind = Parser::kNone;
  if (!parser.Object(1, text, &text_kind, nullptr, nullptr, pile_set_name,
                     &name_kind)) {
    return parser.error;
  }
  if (!parser.AtEnd()) {
    parser.Fail("trailing characters");
    return parser.error;
  }
  if (text_kind != Parser::kString) return "missing string field \"text\"";
  if (name_kind != Parser::kString) pile_set_name->clear();
  return "";
}

}  // namespace lft
