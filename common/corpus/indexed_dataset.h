// Megatron-LM MMapIndexedDataset (.bin + .idx) reader and writer.
//
// The .bin file is the concatenation of all token sequences in one dtype; the
// .idx file describes them (all little-endian):
//   magic     9 bytes  "MMIDIDX\0\0"
//   version   u64      1
//   dtype     u8       1 u8, 2 i8, 3 i16, 4 i32, 5 i64, 6 f32, 7 f64, 8 u16
//   sequences u64      n
//   doc_count u64      d + 1 (the length of doc_idx, as Megatron writes it)
//   sizes     int32[n] tokens per sequence
//   pointers  int64[n] byte offset of each sequence in .bin
//   doc_idx   int64[d+1] sequence index where each document starts; the
//             first is 0 and the last is n, so document k is sequences
//             [doc_idx[k], doc_idx[k+1]).
// Both files are mmap'd; Open() validates every field and offset against the
// file sizes, so a corrupt index yields an error and never a bad read.
#ifndef LFT_COMMON_CORPUS_INDEXED_DATASET_H_
#define LFT_COMMON_CORPUS_INDEXED_DATASET_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace lft {

enum class IndexedDtype : uint8_t {
  kUint8 = 1,
  kInt8 = 2,
  kInt16 = 3,
  kInt32 = 4,
  kInt64 = 5,
  kFloat32 = 6,
  kFloat64 = 7,
  kUint16 = 8,
};

// Bytes per element; 0 for an unknown code.
size_t IndexedDtypeSize(IndexedDtype dtype);

class IndexedDataset {
 public:
  // Opens `prefix`.idx and `prefix`.bin. NotFound etc. from errno when a file
  // cannot be opened; DataLoss with the file, field and expected value when
  // the index is malformed or points outside the .bin file.
  static absl::StatusOr<std::unique_ptr<IndexedDataset>> Open(
      const std::string& prefix);
  ~IndexedDataset();
  IndexedDataset(const IndexedDataset&) = delete;
  IndexedDataset& operator=(const IndexedDataset&) = delete;

  IndexedDtype dtype() const { return dtype_; }
  int64_t num_sequences() const { return num_sequences_; }
  int64_t num_documents() const { return num_doc_idx_ - 1; }
  // Tokens in sequence i (0 <= i < num_sequences(), unchecked).
  int32_t sequence_length(int64_t i) const;
  // doc_idx[k] for 0 <= k <= num_documents() (unchecked): document k is
  // sequences [document_start(k), document_start(k + 1)).
  int64_t document_start(int64_t k) const;
  // The raw bytes of sequence i (sequence_length(i) * element size).
  absl::Span<const uint8_t> RawSequence(int64_t i) const;

  // Sequence i converted to int64 (floats truncated). OutOfRange for a bad i.
  absl::StatusOr<std::vector<int64_t>> Sequence(int64_t i) const;
  // All sequences of document k concatenated. OutOfRange for a bad k.
  absl::StatusOr<std::vector<int64_t>> Document(int64_t k) const;

 private:
  IndexedDataset() = default;
  absl::Status Parse(const std::string& idx_path);
  void AppendSequence(int64_t i, std::vector<int64_t>* out) const;

  void* idx_map_ = nullptr;
  size_t idx_size_ = 0;
  void* bin_map_ = nullptr;
  size_t bin_size_ = 0;
  IndexedDtype dtype_ = IndexedDtype::kUint16;
  int64_t num_sequences_ = 0;
  int64_t num_doc_idx_ = 0;
  // The arrays start at byte 34 of the .idx and are therefore unaligned:
  // elements are read with memcpy.
  const uint8_t* sizes_ = nullptr;
  const uint8_t* pointers_ = nullptr;
  const uint8_t* doc_idx_ = nullptr;
  int64_t pointer(int64_t i) const;
};

// Writes a dataset that IndexedDataset (and Megatron-LM) can read. Call
// AddSequence() for each sequence and EndDocument() after the last sequence
// of each document, then Close(). Files appear at their paths only after a
// successful Close().
class IndexedDatasetWriter {
 public:
  static absl::StatusOr<std::unique_ptr<IndexedDatasetWriter>> Open(
      const std::string& prefix, IndexedDtype dtype);
  ~IndexedDatasetWriter();
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;

  // OutOfRange when a token does not fit the dtype (integer dtypes).
  absl::Status AddSequence(absl::Span<const int64_t> tokens);
  void EndDocument();
  // Ends an unterminated document, writes the .idx and renames both files.
  absl::Status Close();

 private:
  IndexedDatasetWriter() = default;
  std::string prefix_;
  IndexedDtype dtype_ = IndexedDtype::kUint16;
  std::FILE* bin_ = nullptr;
  std::vector<int32_t> sizes_;
  std::vector<int64_t> pointers_;
  std::vector<int64_t> doc_idx_{0};
  int64_t bin_bytes_ = 0;
  std::vector<uint8_t> scratch_;
  bool closed_ = false;
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_INDEXED_DATASET_H_
