// Small Unicode helpers for the tokenizer: UTF-8 decoding, the General
// Category classes the GPT-2 pre-tokenizer regex uses (\p{L}, \p{N}, \s), and
// NFC normalization. Tables come from Python's unicodedata (version in
// UnicodeVersion()); HF tokenizers uses the Rust unicode-normalization and
// Oniguruma tables, which can differ for code points assigned in a newer
// Unicode version than ours.
#ifndef LFT_COMMON_TEXT_UNICODE_H_
#define LFT_COMMON_TEXT_UNICODE_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace lft {

// The Unicode version of the generated tables, e.g. "14.0.0".
const char* UnicodeVersion();

// Decodes one UTF-8 code point at text[*pos] and advances *pos. An invalid or
// truncated sequence yields U+FFFD and advances by one byte, so every input
// byte is consumed exactly once and decoding never fails.
char32_t DecodeUtf8(absl::string_view text, size_t* pos);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(char32_t cp, std::string* out);

// True for General_Category L* (Lu Ll Lt Lm Lo).
bool IsLetter(char32_t cp);
// True for General_Category N* (Nd Nl No).
bool IsNumber(char32_t cp);
// True for the Unicode White_Space property (what Oniguruma's \s matches).
bool IsWhitespace(char32_t cp);

// Canonical combining class (0 for starters).
int CombiningClass(char32_t cp);

// True when `text` is valid UTF-8 with every code point below U+0300: such
// text has no combining marks and is its own NFC form (most of an English
// corpus). A cheap check that lets callers skip NfcNormalize's copy.
bool IsTriviallyNfc(absl::string_view text);

// Returns the NFC form of UTF-8 `text`. Pure-ASCII and already-NFC inputs
// are returned unchanged cheaply. Invalid UTF-8 bytes become U+FFFD.
std::string NfcNormalize(absl::string_view text);
// As NfcNormalize, but nullopt when `text` is already NFC (no copy).
std::optional<std::string> NfcNormalizeIfChanged(absl::string_view text);

}  // namespace lft

#endif  // LFT_COMMON_TEXT_UNICODE_H_
