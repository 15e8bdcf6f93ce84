// libFuzzer target: loading a tokenizer.json (vocabulary, merges, added
// tokens), then encoding a fixed text with whatever was accepted.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "common/text/bpe_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer = lft::BpeTokenizer::FromJson(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!tokenizer.ok()) return 0;
  (void)(*tokenizer)->Encode("Hello, world! 123 <|endoftext|> \xc3\xa9t\xc3\xa9");
  (void)(*tokenizer)->TokenToId("<|endoftext|>");
  return 0;
}
