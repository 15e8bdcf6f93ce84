// lft's definition of rocksdb::crc32c::Extend: it must be the one
// librocksdb's calls reach, and it must compute exactly what the library's
// own software function computes (blob files, WALs and SSTs written by
// either stay readable by both).
#include "latent-store/rocksdb_crc32c.h"

#include <dlfcn.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "latent-store/crc32c.h"
#include "latent-store/latent_store.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

constexpr char kExtend[] = "_ZN7rocksdb6crc32c6ExtendEjPKcm";
using ExtendFn = uint32_t (*)(uint32_t, const char*, size_t);

TEST(RocksDbCrc32cTest, LibraryCallsBindToLftsFunction) {
  ASSERT_TRUE(Crc32cIsHardwareAccelerated()) << "this CPU lacks SSE4.2";
  EXPECT_TRUE(RocksDbCrc32cIsAccelerated());
  void* global = dlsym(RTLD_DEFAULT, kExtend);
  void* library = dlsym(RTLD_NEXT, kExtend);
  ASSERT_NE(global, nullptr);
  ASSERT_NE(library, nullptr) << "librocksdb no longer exports " << kExtend;
  EXPECT_NE(global, library);
}

TEST(RocksDbCrc32cTest, EqualsTheLibrarysOwnFunction) {
  auto ours = reinterpret_cast<ExtendFn>(dlsym(RTLD_DEFAULT, kExtend));
  auto theirs = reinterpret_cast<ExtendFn>(dlsym(RTLD_NEXT, kExtend));
  ASSERT_NE(ours, nullptr);
  ASSERT_NE(theirs, nullptr);
  EXPECT_EQ(ours(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(theirs(0, "123456789", 9), 0xE3069283u);
  std::mt19937_64 rng(7);
  std::string buffer(70000, '\0');
  for (char& c : buffer) c = static_cast<char>(rng());
  for (int trial = 0; trial < 400; ++trial) {
    const size_t offset = rng() % 64;  // unaligned starts
    const size_t length =
        trial < 100 ? static_cast<size_t>(trial) : rng() % (buffer.size() - 64);
    const uint32_t init = trial % 3 == 0 ? 0 : static_cast<uint32_t>(rng());
    ASSERT_EQ(ours(init, buffer.data() + offset, length),
              theirs(init, buffer.data() + offset, length))
        << "offset " << offset << " length " << length << " init " << init;
  }
}

TEST(RocksDbCrc32cTest, StoreReopensFromItsWalAndBlobFiles) {
  // A store written with the replacement reopens (WAL replay and blob reads
  // check RocksDB's record checksums) and returns its pairs intact.
  testing_util::TempDir dir;
  const std::string path = dir.Sub("db");
  JobConfig config;
  config.hidden = 256;
  {
    auto store = LatentStore::Open(path, LatentStoreOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CreateJob("j", config).ok());
    std::vector<LatentPairRecord> pairs;
    for (uint64_t s = 0; s < 4; ++s) {
      pairs.push_back(testing_util::MakePair(0, s, 0, 64, 256));
    }
    ASSERT_TRUE((*store)->PutPairs("j", pairs, absl::InfiniteFuture()).ok());
  }
  auto store = LatentStore::Open(path, LatentStoreOptions());
  ASSERT_TRUE(store.ok()) << store.status();
  std::vector<LatentPairRecord> back = testing_util::ScanAll(store->get(), "j");
  ASSERT_EQ(back.size(), 4u);
  for (const LatentPairRecord& p : back)
    EXPECT_TRUE(testing_util::PairIntact(p));
}

}  // namespace
}  // namespace lft
