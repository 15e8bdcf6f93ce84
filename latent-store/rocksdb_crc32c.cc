#include "latent-store/rocksdb_crc32c.h"

#include <dlfcn.h>

#include <cstddef>
#include <cstdint>

#include "latent-store/crc32c.h"

#if defined(LFT_REPLACE_ROCKSDB_CRC32C)
// The symbol librocksdb defines in util/crc32c.cc (not in its public
// headers), with the same contract: the CRC-32C of A + data, given
// init_crc = the CRC-32C of A.
namespace rocksdb {
namespace crc32c {
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);

uint32_t Extend(uint32_t init_crc, const char* data, size_t n) {
  return lft::Crc32cExtend(init_crc, data, n);
}
}  // namespace crc32c
}  // namespace rocksdb

#endif  // LFT_REPLACE_ROCKSDB_CRC32C

namespace lft {

bool RocksDbCrc32cIsAccelerated() {
#if !defined(LFT_REPLACE_ROCKSDB_CRC32C)
  return false;
#else
  void* bound = dlsym(RTLD_DEFAULT, "_ZN7rocksdb6crc32c6ExtendEjPKcm");
  return bound == reinterpret_cast<void*>(&rocksdb::crc32c::Extend) &&
         Crc32cIsHardwareAccelerated();
#endif
}

}  // namespace lft
