#include <openssl/evp.h>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "latent-store/record_format.h"
#include "nlohmann/json.hpp"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using testing_util::StatusIs;
using testing_util::TempDir;

std::string Sha256Hex(absl::string_view data) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), d, &n, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(d), n));
}

std::string Blob(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    LatentStoreOptions o;
    o.sync = false;
    o.checkpoint_chunk_bytes = 1000;  // several chunks per blob
    auto s = LatentStore::Open(dir_.Sub("db"), o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
    JobConfig c;
    c.hidden = 8;
    ASSERT_TRUE(store_->CreateJob("job", c).ok());
  }
  TempDir dir_;
  std::unique_ptr<LatentStore> store_;
};

TEST_F(CheckpointTest, PutGetListDelete) {
  const std::string blob = Blob(4500, 'a');
  auto info = store_->PutCheckpoint("job", "step-100", blob, "");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sha256, Sha256Hex(blob));
  EXPECT_EQ(info->bytes, 4500u);
  EXPECT_EQ(*store_->GetCheckpoint("job", "step-100"), blob);
  auto list = store_->ListCheckpoints("job");
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "step-100");
  EXPECT_EQ((*list)[0].sha256, Sha256Hex(blob));
  EXPECT_EQ(store_->Stats("job")->checkpoints, 1u);
  // Replacing keeps one entry with the new bytes.
  const std::string blob2 = Blob(10, 'z');
  ASSERT_TRUE(
      store_->PutCheckpoint("job", "step-100", blob2, Sha256Hex(blob2)).ok());
  EXPECT_EQ(*store_->GetCheckpoint("job", "step-100"), blob2);
  EXPECT_EQ(store_->ListCheckpoints("job")->size(), 1u);
  ASSERT_TRUE(store_->DeleteCheckpoint("job", "step-100").ok());
  EXPECT_THAT(
      store_->GetCheckpoint("job", "step-100"),
      StatusIs(absl::StatusCode::kNotFound, "no checkpoint 'step-100'"));
  EXPECT_THAT(store_->DeleteCheckpoint("job", "step-100"),
              StatusIs(absl::StatusCode::kNotFound, "step-100"));
  // Empty blobs are fine.
  ASSERT_TRUE(store_->PutCheckpoint("job", "empty", "", "").ok());
  EXPECT_EQ(*store_->GetCheckpoint("job", "empty"), "");
}

TEST_F(CheckpointTest, DigestMismatchPublishesNothing) {
  const std::string blob = Blob(2500, 'b');
  EXPECT_THAT(store_->PutCheckpoint("job", "c", blob, std::string(64, '0')),
              StatusIs(absl::StatusCode::kDataLoss, "not published"));
  EXPECT_TRUE(store_->ListCheckpoints("job")->empty());
  EXPECT_THAT(store_->PutCheckpoint("job", "c", blob, "abc"),
              StatusIs(absl::StatusCode::kInvalidArgument, "64 hex digits"));
  EXPECT_THAT(store_->PutCheckpoint("nojob", "c", blob, ""),
              StatusIs(absl::StatusCode::kNotFound, "nojob"));
  EXPECT_THAT(store_->PutCheckpoint("job", "a/b", blob, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "may contain only"));
}

TEST_F(CheckpointTest, UnfinishedUploadIsNeverListedAndIsCollected) {
  {
    auto w = store_->StartCheckpoint("job", "half", "");
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Blob(3500, 'c')).ok());
    EXPECT_TRUE(store_->ListCheckpoints("job")->empty());
    EXPECT_THAT(store_->GetCheckpoint("job", "half"),
                StatusIs(absl::StatusCode::kNotFound, "half"));
    // Simulate a crash: the destructor must not clean up.
    (*w)->TestOnlyAbandon();
  }
  Reopen();  // collects the abandoned chunks
  EXPECT_TRUE(store_->ListCheckpoints("job")->empty());
  // The store still publishes new checkpoints after the cleanup.
  ASSERT_TRUE(store_->PutCheckpoint("job", "ok", "x", "").ok());
  EXPECT_EQ(store_->ListCheckpoints("job")->size(), 1u);
}

TEST_F(CheckpointTest, CorruptChunkIsDataLossOnRead) {
  const std::string blob = Blob(2500, 'd');
  ASSERT_TRUE(store_->PutCheckpoint("job", "c", blob, "").ok());
  auto manifest =
      store_->TestOnlyGetRaw("meta", store_format::ManifestKey("job", "c"));
  ASSERT_TRUE(manifest.ok());
  const uint64_t blob_id =
      nlohmann::json::parse(*manifest)["blob_id"].get<uint64_t>();
  const std::string key = store_format::ChunkKey("job", blob_id, 1);
  std::string chunk = *store_->TestOnlyGetRaw("checkpoints", key);
  chunk[10] ^= 0x40;
  ASSERT_TRUE(store_->TestOnlyPutRaw("checkpoints", key, chunk).ok());
  EXPECT_THAT(store_->GetCheckpoint("job", "c"),
              StatusIs(absl::StatusCode::kDataLoss, "is corrupt"));
}

TEST_F(CheckpointTest, KeepLastDeletesTheOldest) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_
                    ->PutCheckpoint("job", "step-" + std::to_string(i),
                                    Blob(100, static_cast<char>(i)), "")
                    .ok());
  }
  auto deleted = store_->KeepLastCheckpoints("job", 2);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 3u);
  auto list = store_->ListCheckpoints("job");
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "step-3");
  EXPECT_EQ((*list)[1].name, "step-4");
  Reopen();
  EXPECT_EQ(store_->ListCheckpoints("job")->size(), 2u);
  EXPECT_EQ(*store_->GetCheckpoint("job", "step-4"), Blob(100, 4));
}

}  // namespace
}  // namespace lft
