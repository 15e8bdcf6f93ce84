// libFuzzer target: the Pile jsonl.zst reader on an arbitrary file (zstd
// frames, lines, JSON documents), read to its end with a small error budget;
// then the sharder's line counter on the same bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/corpus/jsonl_zst.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      absl::StrCat("/tmp/lft_jsonl_zst_fuzzer_", getpid(), ".jsonl.zst");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  lft::JsonlReaderOptions options;
  options.max_errors = 3;
  auto reader = lft::JsonlZstReader::Open(path, options);
  if (reader.ok()) {
    lft::JsonlDocument doc;
    for (int i = 0; i < 100000; ++i) {
      auto more = (*reader)->Next(&doc);
      if (!more.ok() || !*more) break;
    }
  }
  (void)lft::CountJsonlZstLines(path);
  return 0;
}
