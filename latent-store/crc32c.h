// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum on
// every latent-store record. RocksDB has one but does not export it.
// Uses the SSE4.2 crc32 instruction when the CPU has it, else a
// slicing-by-8 table. Check value: Crc32c("123456789") == 0xE3069283.
#ifndef LFT_LATENT_STORE_CRC32C_H_
#define LFT_LATENT_STORE_CRC32C_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace lft {

// Extends `crc` (the value of a previous call, or 0 to start) over `data`.
// Crc32cExtend(Crc32cExtend(0, a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);
inline uint32_t Crc32c(absl::string_view data) {
  return Crc32cExtend(0, data.data(), data.size());
}
// The portable table version, exposed so tests compare both paths.
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t size);
// True when Crc32cExtend uses SSE4.2.
bool Crc32cIsHardwareAccelerated();

}  // namespace lft

#endif  // LFT_LATENT_STORE_CRC32C_H_
