// LatentStore's payload files (LatentStoreOptions::payload_files): payloads
// in files of their own and small references in RocksDB; records written
// inline by an older store stay readable; a reopened store starts a new
// file; deletions remove the files; leftovers of unknown jobs go at Open;
// a missing or truncated file is DataLoss naming the key; a scan keeps its
// bytes through a concurrent DeletePairs; PutPairs calls rotate over a
// job's lanes, one open file each; a payload file starts early
// writeback every threshold's worth of bytes.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "latent-store/payload_file.h"
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

// Each PutPairs call writes its batch into the next of the job's lanes
// (LatentStoreOptions::payload_lanes, 4), one open file each; the fifth
// call appends to the first lane's file again; SyncPairs syncs them all.
TEST_F(PayloadFilesTest, CallsRotateOverTheLanesFiles) {
  Create("job");
  for (uint64_t call = 0; call < 5; ++call)
    Write("job", call * 3, call * 3 + 3);
  EXPECT_EQ(Files("job"),
            (std::vector<std::string>{"0.lftp", "1.lftp", "2.lftp", "3.lftp"}));
  EXPECT_EQ(fs::file_size(JobDir("job") / "0.lftp"), 6 * kPayload);
  EXPECT_EQ(fs::file_size(JobDir("job") / "3.lftp"), 3 * kPayload);
  ASSERT_TRUE(store_->SyncPairs("job", *store_->WriteSession()).ok());
  ExpectIntact("job", 15);
}

// Concurrent writers (the teacher's store writers): every pair lands
// intact and the job has at most one file per lane.
TEST_F(PayloadFilesTest, ConcurrentCallsWriteTheLanesInParallel) {
  Create("job");
  std::vector<std::thread> writers;
  for (uint64_t w = 0; w < 4; ++w) {
    writers.emplace_back([this, w] {
      for (uint64_t i = 0; i < 10; ++i) {
        const uint64_t first = (w * 10 + i) * 2;
        Write("job", first, first + 2);
      }
    });
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(Files("job").size(), 4u);
  ASSERT_TRUE(store_->SyncPairs("job", *store_->WriteSession()).ok());
  ExpectIntact("job", 80);
}

// Early writeback: a writeback starts each time the bytes written since
// the last one reach the threshold, the bytes read back are the bytes
// written, and a threshold of 0 never starts one.
TEST(PayloadFileTest, StartsWritebackEveryThresholdBytes) {
  TempDir dir;
  auto f = PayloadFile::Create(dir.Sub("a.lftp"), 1, /*bytes_per_writeback=*/
                               1000);
  ASSERT_TRUE(f.ok()) << f.status();
  std::string a(150, 'a'), b(150, 'b');  // 300 bytes a write
  uint64_t at = 0;
  std::vector<uint64_t> after;
  for (int i = 0; i < 7; ++i, at += 300) {
    ASSERT_TRUE((*f)->WriteAt(at, a, b).ok());
    after.push_back((*f)->writebacks_started());
  }
  // 300, 600, 900, 1200 -> start; 300, 600, 900.
  EXPECT_EQ(after, (std::vector<uint64_t>{0, 0, 0, 1, 1, 1, 1}));
  ASSERT_TRUE((*f)->WriteAt(at, a, b).ok());
  EXPECT_EQ((*f)->writebacks_started(), 2u);
  ASSERT_TRUE((*f)->SyncIfDirty().ok());
  std::string back(300, '\0');
  ASSERT_TRUE((*f)->ReadAt(at, back.size(), back.data()).ok());
  EXPECT_EQ(back, a + b);

  auto never = PayloadFile::Create(dir.Sub("b.lftp"), 2);
  ASSERT_TRUE(never.ok());
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_TRUE((*never)->WriteAt(i * 300, a, b).ok());
  }
  EXPECT_EQ((*never)->writebacks_started(), 0u);
}

// Writers on disjoint ranges at once (as LatentStore's are): every byte
// lands where it was written, and the writebacks started are at most one
// per threshold's worth of bytes and at least one.
TEST(PayloadFileTest, ParallelWritersShareTheWritebackCount) {
  TempDir dir;
  constexpr uint64_t kThreshold = 64 << 10;
  constexpr int kWriters = 4, kWrites = 64;
  constexpr size_t kHalf = 2048;
  auto f = PayloadFile::Create(dir.Sub("p.lftp"), 1, kThreshold);
  ASSERT_TRUE(f.ok());
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      const std::string x(kHalf, static_cast<char>('a' + w));
      for (int i = 0; i < kWrites; ++i) {
        const uint64_t slot = static_cast<uint64_t>(i * kWriters + w);
        EXPECT_TRUE((*f)->WriteAt(slot * 2 * kHalf, x, x).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  const uint64_t total = uint64_t{kWriters} * kWrites * 2 * kHalf;
  EXPECT_GE((*f)->writebacks_started(), 1u);
  EXPECT_LE((*f)->writebacks_started(), total / kThreshold);
  ASSERT_TRUE((*f)->SyncIfDirty().ok());
  std::string back(2 * kHalf, '\0');
  for (uint64_t slot = 0; slot < kWriters * kWrites; ++slot) {
    ASSERT_TRUE((*f)->ReadAt(slot * 2 * kHalf, back.size(), back.data()).ok());
    ASSERT_EQ(back,
              std::string(2 * kHalf, static_cast<char>('a' + slot % kWriters)))
        << "slot " << slot;
  }
}

}  // namespace
}  // namespace lft
