// LatentStore's payload files (LatentStoreOptions::payload_files): payloads
// in files of their own and small references in RocksDB; records written
// inline by an older store stay readable; a reopened store starts a new
// file; deletions remove the files; leftovers of unknown jobs go at Open;
// a missing or truncated file is DataLoss naming the key; a scan keeps its
// bytes through a concurrent DeletePairs.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "latent-store/record_format.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::ScanAll;
using testing_util::StatusIs;
using testing_util::TempDir;

constexpr uint32_t kHidden = 16;
constexpr uint32_t kTokens = 3;
// x0 + x1 of one pair in bf16.
constexpr uint64_t kPayload = 2ull * kTokens * kHidden * 2;

class PayloadFilesTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(true); }
  void Reopen(bool payload_files) {
    store_.reset();
    LatentStoreOptions o;
    o.sync = false;
    o.write_buffer_bytes = 4 << 20;
    o.payload_files = payload_files;
    auto s = LatentStore::Open(db(), o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  std::string db() const { return dir_.Sub("db"); }
  fs::path JobDir(const std::string& job) const {
    return fs::path(db()) / "payloads" / ("j-" + job);
  }
  void Create(const std::string& job) {
    JobConfig c;
    c.hidden = kHidden;
    ASSERT_TRUE(store_->CreateJob(job, c).ok());
  }
  void Write(const std::string& job, uint64_t begin, uint64_t end) {
    std::vector<LatentPairRecord> batch;
    for (uint64_t s = begin; s < end; ++s) {
      batch.push_back(MakePair(0, s, 0, kTokens, kHidden));
    }
    ASSERT_TRUE(store_->PutPairs(job, batch, absl::InfiniteFuture()).ok());
  }
  std::vector<std::string> Files(const std::string& job) const {
    std::vector<std::string> names;
    std::error_code ec;
    if (!fs::exists(JobDir(job), ec)) return names;
    for (const auto& e : fs::directory_iterator(JobDir(job))) {
      names.push_back(e.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  void ExpectIntact(const std::string& job, size_t n) {
    auto pairs = ScanAll(store_.get(), job);
    ASSERT_EQ(pairs.size(), n);
    for (const auto& p : pairs) EXPECT_TRUE(PairIntact(p)) << p.sequence;
  }

  TempDir dir_;
  std::unique_ptr<LatentStore> store_;
};

TEST_F(PayloadFilesTest, PayloadsLiveInTheirFileAndRocksDbHoldsReferences) {
  Create("job");
  Write("job", 0, 10);
  ASSERT_EQ(Files("job"), std::vector<std::string>{"0.lftp"});
  EXPECT_EQ(fs::file_size(JobDir("job") / "0.lftp"), 10 * kPayload);
  auto raw =
      store_->TestOnlyGetRaw("pairs", store_format::PairKey("job", 0, 4, 0));
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->size(), store_format::kRecordHeaderBytes + 4 * kTokens +
                             store_format::kPayloadReferenceBytes);
  ExpectIntact("job", 10);
  ASSERT_TRUE(store_->SyncPairs("job", *store_->WriteSession()).ok());
  EXPECT_EQ(store_->Stats("job")->bytes,
            10 * (kPayload + store_format::kRecordHeaderBytes + 4 * kTokens));
}

TEST_F(PayloadFilesTest, InlineRecordsOfAnOlderLayoutStayReadable) {
  Reopen(false);
  Create("job");
  Write("job", 0, 5);
  EXPECT_TRUE(Files("job").empty());
  Reopen(true);
  Write("job", 5, 10);
  ExpectIntact("job", 10);
  Reopen(false);  // and the other way round
  ExpectIntact("job", 10);
}

TEST_F(PayloadFilesTest, AReopenedStoreAppendsToANewFileOnly) {
  Create("job");
  Write("job", 0, 4);
  Reopen(true);
  Write("job", 4, 6);
  EXPECT_EQ(Files("job"), (std::vector<std::string>{"0.lftp", "1.lftp"}));
  EXPECT_EQ(fs::file_size(JobDir("job") / "0.lftp"), 4 * kPayload);
  EXPECT_EQ(fs::file_size(JobDir("job") / "1.lftp"), 2 * kPayload);
  ExpectIntact("job", 6);
}

TEST_F(PayloadFilesTest, DeletionsRemoveTheFilesAndWritesGoOn) {
  Create("job");
  Write("job", 0, 8);
  ASSERT_TRUE(store_->DeletePairs("job").ok());
  EXPECT_FALSE(fs::exists(JobDir("job")));
  ExpectIntact("job", 0);
  Write("job", 0, 3);
  EXPECT_EQ(Files("job"), std::vector<std::string>{"1.lftp"});
  ExpectIntact("job", 3);
  ASSERT_TRUE(store_->DeleteJob("job").ok());
  EXPECT_FALSE(fs::exists(JobDir("job")));
}

TEST_F(PayloadFilesTest, LeftoversOfUnknownJobsAreRemovedAtOpen) {
  Create("job");
  Write("job", 0, 2);
  store_.reset();
  fs::create_directories(JobDir("ghost"));
  std::ofstream(JobDir("ghost") / "0.lftp") << "bytes of a deleted job";
  Reopen(true);
  EXPECT_FALSE(fs::exists(JobDir("ghost")));
  ExpectIntact("job", 2);
}

TEST_F(PayloadFilesTest, AMissingOrTruncatedFileIsDataLossNamingTheKey) {
  Create("job");
  Write("job", 0, 4);
  store_.reset();
  fs::resize_file(JobDir("job") / "0.lftp", 3 * kPayload);
  Reopen(true);
  {
    auto reader = store_->Scan("job", ScanOptions());
    ASSERT_TRUE(reader.ok());
    LatentPairRecord p;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(*(*reader)->Next(&p));
    EXPECT_THAT((*reader)->Next(&p),
                StatusIs(absl::StatusCode::kDataLoss, "ends before offset"));
  }
  store_.reset();
  fs::remove(JobDir("job") / "0.lftp");
  Reopen(true);
  auto reader = store_->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  EXPECT_THAT((*reader)->Next(&p),
              StatusIs(absl::StatusCode::kDataLoss,
                       "payload file 0 of job 'job' is missing"));
}

TEST_F(PayloadFilesTest, AHeaderClaimingMoreThanTheFileIsDataLossUnallocated) {
  Create("job");
  Write("job", 0, 2);
  // A record that says [2^20, 1024] bf16 (2 GiB per tensor) at offset 0 of
  // file 0: refused by the range check before anything is allocated.
  LatentPairRecord big;
  big.tokens = 1u << 20;
  big.hidden = 1024;
  big.codec = TensorCodec::kBF16;
  std::string value;
  store_format::EncodeRecordPrefix(big, &value,
                                   store_format::kFlagPayloadInFile);
  // The prefix carries the tensor size of the (empty) payload; patch in
  // the size the shape implies, as a corrupt header would.
  const uint32_t tensor = 2u << 30;
  for (int i = 0; i < 4; ++i)
    value[20 + i] = static_cast<char>(tensor >> (8 * i));
  value += store_format::PayloadReference(0, 0);
  const std::string key = store_format::PairKey("job", 0, 1, 0);
  ASSERT_TRUE(store_->TestOnlyPutRaw("pairs", key, value).ok());
  auto reader = store_->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  ASSERT_TRUE(*(*reader)->Next(&p));
  EXPECT_THAT((*reader)->Next(&p),
              StatusIs(absl::StatusCode::kDataLoss, "ends before offset"));
}

TEST_F(PayloadFilesTest, AScanKeepsItsPayloadsThroughDeletePairs) {
  Create("job");
  Write("job", 0, 20);
  ScanOptions o;
  o.readahead_pairs = 1;
  o.read_threads = 1;
  auto reader = store_->Scan("job", o);
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  ASSERT_TRUE(*(*reader)->Next(&p));
  ASSERT_TRUE(store_->DeletePairs("job").ok());
  EXPECT_FALSE(fs::exists(JobDir("job")));
  size_t n = 1;
  while (true) {
    auto more = (*reader)->Next(&p);
    ASSERT_TRUE(more.ok()) << more.status();
    if (!*more) break;
    EXPECT_TRUE(PairIntact(p));
    ++n;
  }
  EXPECT_EQ(n, 20u);
}

}  // namespace
}  // namespace lft
