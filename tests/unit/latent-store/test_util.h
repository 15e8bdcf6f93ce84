// Shared helpers for the store tests: temp dirs, deterministic pairs and a
// full scan.
#ifndef LFT_TESTS_UNIT_LATENT_STORE_TEST_UTIL_H_
#define LFT_TESTS_UNIT_LATENT_STORE_TEST_UTIL_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/tensor/tensor_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/pair_store.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace testing_util {

// The project-wide matcher (tests/testing/status_matchers.h).
using ::lft::testing::StatusIs;

// Every pair `store` yields for `job` under `options`, in scan order; a
// failed Scan or Next is a test failure.
inline std::vector<LatentPairRecord> ScanAll(PairStore* store,
                                             const std::string& job,
                                             const ScanOptions& options = {}) {
  std::vector<LatentPairRecord> out;
  auto reader = store->Scan(job, options);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  LatentPairRecord p;
  while (true) {
    auto more = (*reader)->Next(&p);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    out.push_back(p);
  }
  return out;
}

// A fresh directory under $TMPDIR, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "lft_store_test_XXXXXX")
            .string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Values derived from the address, so a read-back can be checked without
// keeping the written pairs around.
inline std::vector<float> PairValues(uint32_t shard, uint64_t sequence,
                                     uint32_t chunk, uint32_t tokens,
                                     uint32_t hidden, int which) {
  std::mt19937 rng(static_cast<uint32_t>(shard * 1000003u + sequence * 7919u +
                                         chunk * 31u + which));
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(tokens) * hidden);
  for (float& x : v) x = dist(rng);
  return v;
}

inline LatentPairRecord MakePair(uint32_t shard, uint64_t sequence,
                                 uint32_t chunk, uint32_t tokens,
                                 uint32_t hidden,
                                 TensorCodec codec = TensorCodec::kBF16) {
  LatentPairRecord p;
  p.shard = shard;
  p.sequence = sequence;
  p.chunk = chunk;
  p.tokens = tokens;
  p.hidden = hidden;
  p.codec = codec;
  EXPECT_TRUE(EncodeRows(codec,
                         PairValues(shard, sequence, chunk, tokens, hidden, 0),
                         tokens, hidden, &p.x0)
                  .ok());
  EXPECT_TRUE(EncodeRows(codec,
                         PairValues(shard, sequence, chunk, tokens, hidden, 1),
                         tokens, hidden, &p.x1)
                  .ok());
  for (uint32_t t = 0; t < tokens; ++t) {
    p.token_ids.push_back(static_cast<int32_t>(sequence * 100 + t));
  }
  return p;
}

// True if `p` holds exactly what MakePair wrote for its address.
inline bool PairIntact(const LatentPairRecord& p) {
  LatentPairRecord want =
      MakePair(p.shard, p.sequence, p.chunk, p.tokens, p.hidden, p.codec);
  return p.x0 == want.x0 && p.x1 == want.x1 && p.token_ids == want.token_ids;
}

}  // namespace testing_util
}  // namespace lft

#endif  // LFT_TESTS_UNIT_LATENT_STORE_TEST_UTIL_H_
