// libFuzzer target: the latent store's record decoder (header, token ids,
// payload sizes, crc32c) and pair-address parser, as ScanPairs runs them on
// whatever RocksDB hands back.
#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "latent-store/record_format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  lft::LatentPairRecord pair;
  (void)lft::store_format::DecodeRecord(bytes, "fuzz", &pair);
  uint32_t shard = 0, chunk = 0;
  uint64_t sequence = 0;
  (void)lft::store_format::ParsePairAddress(bytes.substr(0, 16), &shard,
                                            &sequence, &chunk);
  return 0;
}
