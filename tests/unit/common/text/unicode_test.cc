#include "common/text/unicode.h"

#include <string>

#include "gtest/gtest.h"

namespace lft {
namespace {

TEST(UnicodeTest, Utf8DecodeEncodeAndInvalidBytes) {
  std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  size_t pos = 0;
  EXPECT_EQ(DecodeUtf8(s, &pos), U'a');
  EXPECT_EQ(DecodeUtf8(s, &pos), U'\u00E9');
  EXPECT_EQ(DecodeUtf8(s, &pos), U'\u20AC');
  EXPECT_EQ(DecodeUtf8(s, &pos), U'\U0001F600');
  EXPECT_EQ(pos, s.size());
  std::string back;
  for (char32_t c : {U'a', U'\u00E9', U'\u20AC', U'\U0001F600'})
    AppendUtf8(c, &back);
  EXPECT_EQ(back, s);
  // Overlong, surrogate, truncated: one U+FFFD per byte consumed.
  for (std::string bad : {"\xC0\xAF", "\xED\xA0\x80", "\xE2\x82"}) {
    pos = 0;
    EXPECT_EQ(DecodeUtf8(bad, &pos), 0xFFFDu);
    EXPECT_EQ(pos, 1u);
  }
}

TEST(UnicodeTest, Categories) {
  EXPECT_TRUE(IsLetter(U'x'));
  EXPECT_TRUE(IsLetter(U'\u00E9'));
  EXPECT_TRUE(IsLetter(U'\u65E5'));   // CJK
  EXPECT_TRUE(IsLetter(U'\u02B0'));   // Lm
  EXPECT_FALSE(IsLetter(U'\u0301'));  // Mn
  EXPECT_FALSE(IsLetter(U'1'));
  EXPECT_TRUE(IsNumber(U'7'));
  EXPECT_TRUE(IsNumber(U'\u0661'));  // Arabic-Indic digit
  EXPECT_TRUE(IsNumber(U'\u00BD'));  // No: vulgar fraction
  EXPECT_TRUE(IsNumber(U'\u2167'));  // Nl: Roman numeral
  EXPECT_FALSE(IsNumber(U'x'));
  EXPECT_TRUE(IsWhitespace(U'\u00A0'));
  EXPECT_TRUE(IsWhitespace(U'\u2003'));
  EXPECT_TRUE(IsWhitespace(U'\n'));
  EXPECT_FALSE(IsWhitespace(U'\u200B'));  // zero width space is not White_Space
  EXPECT_FALSE(IsWhitespace(U'\x1C'));
}

TEST(UnicodeTest, NfcComposesReordersAndKeepsNfcText) {
  // Expected values from Python's unicodedata.normalize("NFC", ...).
  EXPECT_EQ(NfcNormalize("cafe\xCC\x81"), "caf\xC3\xA9");  // e + U+0301
  EXPECT_EQ(NfcNormalize("A\xCC\x8A"), "\xC3\x85");        // A + ring
  EXPECT_EQ(NfcNormalize("\xE2\x84\xAB"), "\xC3\x85");     // U+212B Angstrom
  // q + dot below (220) + dot above (230) in the wrong order is reordered,
  // and nothing composes with q.
  EXPECT_EQ(NfcNormalize("q\xCC\x87\xCC\xA3"), "q\xCC\xA3\xCC\x87");
  // s + dot above + dot below composes to U+1E69.
  EXPECT_EQ(NfcNormalize("s\xCC\x87\xCC\xA3"), "\xE1\xB9\xA9");
  // Hangul jamo L V T compose to a syllable (U+D4DB).
  EXPECT_EQ(NfcNormalize("\xE1\x84\x91\xE1\x85\xB1\xE1\x86\xB6"),
            "\xED\x93\x9B");
  // Composition exclusions stay decomposed (U+0958 -> U+0915 U+093C).
  EXPECT_EQ(NfcNormalize("\xE0\xA5\x98"), "\xE0\xA4\x95\xE0\xA4\xBC");
  std::string nfc = "plain ASCII, caf\xC3\xA9, \xE6\x97\xA5\xE6\x9C\xAC";
  EXPECT_EQ(NfcNormalize(nfc), nfc);
  EXPECT_EQ(NfcNormalize("a\xFF"), "a\xEF\xBF\xBD");
  // Only the regions around non-trivial code points change; the rest of the
  // text is copied through.
  EXPECT_EQ(
      NfcNormalize("xx cafe\xCC\x81 yy \xE2\x80\x99s\xCC\x87\xCC\xA3 zz\xFF!"),
      "xx caf\xC3\xA9 yy \xE2\x80\x99\xE1\xB9\xA9 zz\xEF\xBF\xBD!");
  EXPECT_TRUE(IsTriviallyNfc("plain caf\xC3\xA9"));
  EXPECT_FALSE(IsTriviallyNfc("\xE2\x80\x99"));
  EXPECT_FALSE(IsTriviallyNfc("a\xC3"));
}

}  // namespace
}  // namespace lft
