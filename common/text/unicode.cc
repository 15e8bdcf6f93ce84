// UTF-8 decoding, category tests and NFC (canonical decomposition, canonical
// ordering, canonical composition per UAX #15) over the generated tables.
#include "common/text/unicode.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/text/unicode_tables.h"

namespace lft {
namespace {

using unicode_internal::CodepointRange;

constexpr char32_t kReplacement = 0xFFFD;

bool InRanges(const CodepointRange* ranges, int size, char32_t cp) {
  const CodepointRange* end = ranges + size;
  const CodepointRange* it = std::upper_bound(
      ranges, end, cp,
      [](char32_t c, const CodepointRange& r) { return c < r.first; });
  if (it == ranges) return false;
  --it;
  return cp <= it->last;
}

// Hangul syllable constants (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161,
                   kTBase = 0x11A7;
constexpr int kLCount = 19, kVCount = 21, kTCount = 28;
constexpr int kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    int s = static_cast<int>(cp - kSBase);
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  using unicode_internal::kDecompositions;
  const auto* begin = kDecompositions;
  const auto* end = kDecompositions + unicode_internal::kDecompositionsSize;
  const auto* it = std::lower_bound(
      begin, end, cp, [](const unicode_internal::Decomposition& d, char32_t c) {
        return d.codepoint < c;
      });
  if (it != end && it->codepoint == cp) {
    for (int i = 0; i < it->length; ++i) {
      out->push_back(unicode_internal::kDecompositionData[it->offset + i]);
    }
    return;
  }
  out->push_back(cp);
}

// The primary composite of (a, b), or 0 if none.
char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase &&
      b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 &&
      b > kTBase && b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  using unicode_internal::Composition;
  const Composition* begin = unicode_internal::kCompositions;
  const Composition* end = begin + unicode_internal::kCompositionsSize;
  const Composition* it = std::lower_bound(
      begin, end, std::make_pair(a, b),
      [](const Composition& c, const std::pair<char32_t, char32_t>& key) {
        return c.first < key.first ||
               (c.first == key.first && c.second < key.second);
      });
  if (it != end && it->first == a && it->second == b) return it->composite;
  return 0;
}

}  // namespace

const char* UnicodeVersion() { return unicode_internal::kUnicodeVersion; }

char32_t DecodeUtf8(absl::string_view text, size_t* pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t n = text.size();
  size_t i = *pos;
  unsigned char c = s[i];
  if (c < 0x80) {
    *pos = i + 1;
    return c;
  }
  int len;
  char32_t cp;
  char32_t min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, cp = c & 0x07, min = 0x10000;
  } else {
    *pos = i + 1;
    return kReplacement;
  }
  if (i + len > n) {
    *pos = i + 1;
    return kReplacement;
  }
  for (int k = 1; k < len; ++k) {
    unsigned char cc = s[i + k];
    if ((cc & 0xC0) != 0x80) {
      *pos = i + 1;
      return kReplacement;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *pos = i + 1;
    return kReplacement;
  }
  *pos = i + len;
  return cp;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsLetter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return InRanges(unicode_internal::kLetterRanges,
                  unicode_internal::kLetterRangesSize, cp);
}

bool IsNumber(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return InRanges(unicode_internal::kNumberRanges,
                  unicode_internal::kNumberRangesSize, cp);
}

bool IsWhitespace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

int CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  using unicode_internal::CombiningClassRange;
  const CombiningClassRange* begin = unicode_internal::kCombiningClassRanges;
  const CombiningClassRange* end =
      begin + unicode_internal::kCombiningClassRangesSize;
  const CombiningClassRange* it = std::upper_bound(
      begin, end, cp,
      [](char32_t c, const CombiningClassRange& r) { return c < r.first; });
  if (it == begin) return 0;
  --it;
  return cp <= it->last ? it->combining_class : 0;
}

bool IsTriviallyNfc(absl::string_view text) {
  // Below U+0300 there are no combining marks and every code point is its
  // own NFC form. In UTF-8 those are ASCII and two-byte sequences with lead
  // bytes C2..CB; invalid bytes go the slow way to become U+FFFD.
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Skip ASCII eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
    } else if (c >= 0xC2 && c <= 0xCB && i + 1 < n &&
               (s[i + 1] & 0xC0) == 0x80) {
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

namespace {
// Full NFC of `text` (decompose, reorder, compose).
std::string NfcSlow(absl::string_view text) {
  std::vector<char32_t> decomposed;
  decomposed.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    Decompose(DecodeUtf8(text, &i), &decomposed);
  }
  // Canonical ordering: stable-sort each run of non-starters by class.
  for (size_t i = 0; i < decomposed.size();) {
    if (CombiningClass(decomposed[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < decomposed.size() && CombiningClass(decomposed[j]) != 0) ++j;
    std::stable_sort(decomposed.begin() + i, decomposed.begin() + j,
                     [](char32_t a, char32_t b) {
                       return CombiningClass(a) < CombiningClass(b);
                     });
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> out;
  out.reserve(decomposed.size());
  long starter = -1;
  int last_class = -1;  // class of out.back() when it is not the starter
  for (char32_t cp : decomposed) {
    int cc = CombiningClass(cp);
    if (starter >= 0) {
      bool adjacent = static_cast<long>(out.size()) - 1 == starter;
      if (adjacent || (last_class != 0 && last_class < cc)) {
        char32_t composite = Compose(out[starter], cp);
        if (composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (cc == 0) {
      starter = static_cast<long>(out.size());
      last_class = -1;
    } else {
      last_class = cc;
    }
    out.push_back(cp);
  }
  std::string result;
  result.reserve(text.size());
  for (char32_t cp : out) AppendUtf8(cp, &result);
  return result;
}
}  // namespace

std::optional<std::string> NfcNormalizeIfChanged(absl::string_view text) {
  if (IsTriviallyNfc(text)) return std::nullopt;
  // Only regions around code points >= U+0300 need work. A code point below
  // U+0300 is a starter that never composes with what precedes it, so
  // normalization never crosses it: each region runs from the last such
  // code point before a non-trivial one to the next such code point.
  // `out` is only built once some region actually changes.
  std::string out;
  bool changed = false;
  size_t copied = 0;         // text[0, copied) is already in out
  size_t last_boundary = 0;  // start of the last code point < U+0300
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    char32_t cp = DecodeUtf8(text, &i);
    bool invalid = cp == kReplacement && i - start == 1 &&
                   static_cast<unsigned char>(text[start]) >= 0x80;
    if (cp < 0x300 && !invalid) {
      last_boundary = start;
      continue;
    }
    size_t region_start = std::max(last_boundary, copied);
    size_t end = i;
    while (end < text.size()) {
      size_t next = end;
      char32_t c = DecodeUtf8(text, &next);
      bool bad = c == kReplacement && next - end == 1 &&
                 static_cast<unsigned char>(text[end]) >= 0x80;
      if (c < 0x300 && !bad) break;
      end = next;
    }
    absl::string_view region = text.substr(region_start, end - region_start);
    std::string normalized = NfcSlow(region);
    if (normalized != region) {
      if (!changed) {
        changed = true;
        out.reserve(text.size() + 16);
      }
      out.append(text.data() + copied, region_start - copied);
      out += normalized;
      copied = end;
    }
    i = end;
    last_boundary = end;
  }
  if (!changed) return std::nullopt;
  out.append(text.data() + copied, text.size() - copied);
  return out;
}

std::string NfcNormalize(absl::string_view text) {
  std::optional<std::string> changed = NfcNormalizeIfChanged(text);
  return changed.has_value() ? *std::move(changed) : std::string(text);
}

}  // namespace lft
