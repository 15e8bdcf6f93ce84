#include "common/corpus/indexed_dataset.h"

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/common/corpus/data_test_util.h"

namespace lft {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Documents: {[1 2 3], [4]}, {[]}, {[5 6]} as sequences.
void WriteFixture(const std::string& prefix, IndexedDtype dtype) {
  auto w = IndexedDatasetWriter::Open(prefix, dtype);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->AddSequence({1, 2, 3}).ok());
  ASSERT_TRUE((*w)->AddSequence({4}).ok());
  (*w)->EndDocument();
  ASSERT_TRUE((*w)->AddSequence({}).ok());
  (*w)->EndDocument();
  ASSERT_TRUE((*w)->AddSequence({5, 6}).ok());
  ASSERT_TRUE((*w)->Close().ok());  // ends the open document
}

TEST(IndexedDatasetTest, RoundTripEveryDtype) {
  TempDir dir;
  for (int code = 1; code <= 8; ++code) {
    std::string prefix = dir.File("ds" + std::to_string(code));
    WriteFixture(prefix, static_cast<IndexedDtype>(code));
    auto ds = IndexedDataset::Open(prefix);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(static_cast<int>((*ds)->dtype()), code);
    EXPECT_EQ((*ds)->num_sequences(), 4);
    EXPECT_EQ((*ds)->num_documents(), 3);
    EXPECT_EQ((*ds)->document_start(0), 0);
    EXPECT_EQ((*ds)->document_start(1), 2);
    EXPECT_EQ((*ds)->document_start(2), 3);
    EXPECT_EQ((*ds)->document_start(3), 4);
    EXPECT_EQ((*ds)->sequence_length(0), 3);
    EXPECT_THAT(*(*ds)->Sequence(0), ElementsAre(1, 2, 3));
    EXPECT_THAT(*(*ds)->Document(0), ElementsAre(1, 2, 3, 4));
    EXPECT_TRUE((*ds)->Document(1)->empty());
    EXPECT_THAT(*(*ds)->Document(2), ElementsAre(5, 6));
    EXPECT_EQ((*ds)->RawSequence(3).size(),
              2 * IndexedDtypeSize(static_cast<IndexedDtype>(code)));
    EXPECT_EQ((*ds)->Sequence(4).status().code(),
              absl::StatusCode::kOutOfRange);
    EXPECT_EQ((*ds)->Document(-1).status().code(),
              absl::StatusCode::kOutOfRange);
  }
}

TEST(IndexedDatasetTest, HeaderLayoutIsMegatrons) {
  TempDir dir;
  std::string prefix = dir.File("m");
  WriteFixture(prefix, IndexedDtype::kUint16);
  std::string idx = ReadFileBytes(prefix + ".idx");
  ASSERT_EQ(idx.size(), 34u + 4 * 12 + 4 * 8);
  EXPECT_EQ(idx.substr(0, 9), std::string("MMIDIDX\0\0", 9));
  uint64_t version, n, d;
  std::memcpy(&version, idx.data() + 9, 8);
  std::memcpy(&n, idx.data() + 18, 8);
  std::memcpy(&d, idx.data() + 26, 8);
  EXPECT_EQ(version, 1u);
  EXPECT_EQ(idx[17], 8);  // uint16
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(d, 4u);  // documents + 1
  EXPECT_EQ(ReadFileBytes(prefix + ".bin").size(), 6u * 2);
}

TEST(IndexedDatasetTest, WriterRejectsOutOfRangeTokens) {
  TempDir dir;
  auto w = IndexedDatasetWriter::Open(dir.File("r"), IndexedDtype::kUint16);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)->AddSequence({70000}).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ((*w)->AddSequence({-1}).code(), absl::StatusCode::kOutOfRange);
}

class CorruptIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    prefix_ = dir_.File("c");
    WriteFixture(prefix_, IndexedDtype::kInt32);
    idx_ = ReadFileBytes(prefix_ + ".idx");
  }
  // Writes a modified index and expects Open() to fail with DataLoss and
  // `substring` in the message.
  void ExpectCorrupt(const std::string& idx, const std::string& substring) {
    WriteFileBytes(prefix_ + ".idx", idx);
    auto ds = IndexedDataset::Open(prefix_);
    ASSERT_FALSE(ds.ok());
    EXPECT_EQ(ds.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(ds.status().message(), HasSubstr(substring));
    EXPECT_THAT(ds.status().message(), HasSubstr(prefix_ + ".idx"));
  }
  template <typename T>
  std::string Patch(size_t offset, T value) {
    std::string s = idx_;
    std::memcpy(s.data() + offset, &value, sizeof(T));
    return s;
  }
  TempDir dir_;
  std::string prefix_;
  std::string idx_;
};

TEST_F(CorruptIndexTest, EachFieldIsValidated) {
  ExpectCorrupt(idx_.substr(0, 20), "shorter than the 34-byte header");
  ExpectCorrupt(Patch<char>(0, 'X'), "bad magic");
  ExpectCorrupt(Patch<uint64_t>(9, 2), "version 2");
  ExpectCorrupt(Patch<uint8_t>(17, 9), "dtype code 9");
  ExpectCorrupt(Patch<uint64_t>(18, uint64_t{1} << 62), "sequence count");
  ExpectCorrupt(Patch<uint64_t>(26, 5), "doc_idx count");
  ExpectCorrupt(idx_.substr(0, idx_.size() - 3), "file has");
  const size_t sizes = 34, pointers = 34 + 16, doc_idx = 34 + 48;
  ExpectCorrupt(Patch<int32_t>(sizes + 4, -1), "sizes[1] = -1");
  ExpectCorrupt(Patch<int32_t>(sizes, 1000), "outside the .bin file");
  ExpectCorrupt(Patch<int64_t>(pointers + 8, 1 << 20), "outside the .bin file");
  ExpectCorrupt(Patch<int64_t>(pointers + 8, 2), "not a multiple");
  ExpectCorrupt(Patch<int64_t>(doc_idx, 1), "doc_idx[0] = 1");
  ExpectCorrupt(Patch<int64_t>(doc_idx + 16, 1), "doc_idx[2] = 1");
  ExpectCorrupt(Patch<int64_t>(doc_idx + 24, 3), "last doc_idx entry");
}

TEST_F(CorruptIndexTest, MissingFilesAreNotFound) {
  EXPECT_EQ(IndexedDataset::Open(dir_.File("absent")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CorruptIndexTest, RandomGarbageNeverCrashes) {
  // Flip bytes all over the index: Open() either fails cleanly or yields a
  // dataset whose every sequence can be read.
  uint32_t x = 7;
  for (int trial = 0; trial < 300; ++trial) {
    std::string s = idx_;
    for (int k = 0; k < 3; ++k) {
      x = x * 1664525u + 1013904223u;
      s[(x >> 8) % s.size()] = static_cast<char>(x >> 24);
    }
    WriteFileBytes(prefix_ + ".idx", s);
    auto ds = IndexedDataset::Open(prefix_);
    if (!ds.ok()) {
      EXPECT_EQ(ds.status().code(), absl::StatusCode::kDataLoss);
      continue;
    }
    for (int64_t d = 0; d < (*ds)->num_documents(); ++d) {
      EXPECT_TRUE((*ds)->Document(d).ok());
    }
  }
}

}  // namespace
}  // namespace lft
