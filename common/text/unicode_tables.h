// Generated Unicode tables (see common/text/tools/gen_unicode_tables.py).
// Internal to common/text/unicode.cc; use common/text/unicode.h instead.
#ifndef LFT_COMMON_TEXT_UNICODE_TABLES_H_
#define LFT_COMMON_TEXT_UNICODE_TABLES_H_

namespace lft {
namespace unicode_internal {

struct CodepointRange {
  char32_t first;
  char32_t last;  // inclusive
};
struct CombiningClassRange {
  char32_t first;
  char32_t last;  // inclusive
  unsigned char combining_class;
};
struct Decomposition {
  char32_t codepoint;
  int offset;  // into kDecompositionData
  int length;
};
struct Composition {
  char32_t first;
  char32_t second;
  char32_t composite;
};

extern const char kUnicodeVersion[];
extern const CodepointRange kLetterRanges[];
extern const int kLetterRangesSize;
extern const CodepointRange kNumberRanges[];
extern const int kNumberRangesSize;
extern const CombiningClassRange kCombiningClassRanges[];
extern const int kCombiningClassRangesSize;
extern const Decomposition kDecompositions[];  // sorted by codepoint
extern const int kDecompositionsSize;
extern const char32_t kDecompositionData[];
extern const Composition kCompositions[];  // sorted by (first, second)
extern const int kCompositionsSize;

}  // namespace unicode_internal
}  // namespace lft

#endif  // LFT_COMMON_TEXT_UNICODE_TABLES_H_
