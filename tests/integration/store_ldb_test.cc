// Interop: RocksDB's own `ldb` tool (Debian rocksdb-tools) can list the
// column families of a store this project wrote and scan its keys in order.
// Skipped when ldb is not installed.
#include <cstdio>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "latent-store/record_format.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::MakePair;
using testing_util::TempDir;

std::string RunShell(const std::string& command) {
  std::string out;
  FILE* f = popen((command + " 2>&1").c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

TEST(StoreLdbTest, LdbListsColumnFamiliesAndScansOrderedKeys) {
  if (RunShell("command -v ldb").empty()) GTEST_SKIP() << "ldb not installed";
  TempDir dir;
  const std::string db = dir.Sub("db");
  {
    LatentStoreOptions o;
    o.min_blob_size = 64;  // exercise blob files too
    auto store = LatentStore::Open(db, o);
    ASSERT_TRUE(store.ok()) << store.status();
    JobConfig c;
    c.hidden = 8;
    ASSERT_TRUE((*store)->CreateJob("job-7", c).ok());
    std::vector<LatentPairRecord> batch = {MakePair(1, 2, 0, 4, 8),
                                           MakePair(0, 300, 1, 4, 8)};
    ASSERT_TRUE(
        (*store)->PutPairs("job-7", batch, absl::InfiniteFuture()).ok());
    ASSERT_TRUE((*store)->Flush().ok());
  }
  const std::string cfs = RunShell("ldb --db=" + db + " list_column_families");
  EXPECT_NE(cfs.find("{default, pairs, checkpoints, meta}"), std::string::npos)
      << cfs;
  const std::string scan = RunShell(
      "ldb --db=" + db + " --column_family=pairs scan --key_hex --no_value");
  const std::string k0 = absl::AsciiStrToUpper(
      absl::BytesToHexString(store_format::PairKey("job-7", 0, 300, 1)));
  const std::string k1 = absl::AsciiStrToUpper(
      absl::BytesToHexString(store_format::PairKey("job-7", 1, 2, 0)));
  const size_t p0 = scan.find("0x" + k0);
  const size_t p1 = scan.find("0x" + k1);
  ASSERT_NE(p0, std::string::npos) << scan;
  ASSERT_NE(p1, std::string::npos) << scan;
  EXPECT_LT(p0, p1);  // shard 0 sorts before shard 1
  std::printf("%s\n%s\n", cfs.c_str(), scan.c_str());
  const std::string meta =
      RunShell("ldb --db=" + db + " --column_family=meta scan");
  EXPECT_NE(meta.find("\"codec\":\"bf16\""), std::string::npos) << meta;
  std::printf("%s\n", meta.substr(0, 2000).c_str());
}

}  // namespace
}  // namespace lft
