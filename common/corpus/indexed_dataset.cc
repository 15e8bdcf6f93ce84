#include "common/corpus/indexed_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/safetensors.h"

namespace lft {
namespace {

constexpr char kMagic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', '\0', '\0'};
constexpr size_t kHeaderSize = 9 + 8 + 1 + 8 + 8;

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// mmaps a whole file read-only. An empty file maps to nullptr, size 0.
absl::Status MapFile(const std::string& path, void** map, size_t* size) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return ErrnoToStatus(e, absl::StrCat("stat ", path));
  }
  *size = static_cast<size_t>(st.st_size);
  *map = nullptr;
  if (*size > 0) {
    void* m = mmap(nullptr, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      return ErrnoToStatus(e, absl::StrCat("mmap ", path));
    }
    *map = m;
  }
  close(fd);
  return absl::OkStatus();
}

bool ValidDtype(uint8_t code) { return code >= 1 && code <= 8; }

}  // namespace

size_t IndexedDtypeSize(IndexedDtype dtype) {
  switch (dtype) {
    case IndexedDtype::kUint8:
    case IndexedDtype::kInt8:
      return 1;
    case IndexedDtype::kInt16:
    case IndexedDtype::kUint16:
      return 2;
    case IndexedDtype::kInt32:
    case IndexedDtype::kFloat32:
      return 4;
    case IndexedDtype::kInt64:
    case IndexedDtype::kFloat64:
      return 8;
  }
  return 0;
}

IndexedDataset::~IndexedDataset() {
  if (idx_map_ != nullptr) munmap(idx_map_, idx_size_);
  if (bin_map_ != nullptr) munmap(bin_map_, bin_size_);
}

absl::StatusOr<std::unique_ptr<IndexedDataset>> IndexedDataset::Open(
    const std::string& prefix) {
  std::unique_ptr<IndexedDataset> ds(new IndexedDataset());
  std::string idx_path = prefix + ".idx";
  std::string bin_path = prefix + ".bin";
  LFT_RETURN_IF_ERROR(MapFile(idx_path, &ds->idx_map_, &ds->idx_size_));
  LFT_RETURN_IF_ERROR(MapFile(bin_path, &ds->bin_map_, &ds->bin_size_));
  LFT_RETURN_IF_ERROR(ds->Parse(idx_path));
  return ds;
}

int32_t IndexedDataset::sequence_length(int64_t i) const {
  return Load<int32_t>(sizes_ + 4 * i);
}
int64_t IndexedDataset::pointer(int64_t i) const {
  return Load<int64_t>(pointers_ + 8 * i);
}
int64_t IndexedDataset::document_start(int64_t k) const {
  return Load<int64_t>(doc_idx_ + 8 * k);
}

absl::Status IndexedDataset::Parse(const std::string& idx_path) {
  auto bad = [&](const std::string& what) {
    return absl::DataLossError(
        absl::StrCat("corrupt Megatron index ", idx_path, ": ", what));
  };
  const auto* base = static_cast<const uint8_t*>(idx_map_);
  if (idx_size_ < kHeaderSize) {
    return bad(absl::StrCat("file is ", idx_size_,
                            " bytes, shorter than the 34-byte header"));
  }
  if (std::memcmp(base, kMagic, 9) != 0) {
    return bad("bad magic, expected \"MMIDIDX\\0\\0\"");
  }
  uint64_t version = Load<uint64_t>(base + 9);
  if (version != 1)
    return bad(absl::StrCat("version ", version, ", expected 1"));
  uint8_t code = base[17];
  if (!ValidDtype(code)) {
    return bad(
        absl::StrCat("dtype code ", static_cast<int>(code), ", expected 1..8"));
  }
  dtype_ = static_cast<IndexedDtype>(code);
  uint64_t n = Load<uint64_t>(base + 18);
  uint64_t d = Load<uint64_t>(base + 26);
  // Each sequence takes 12 index bytes and each doc_idx entry 8, so counts
  // beyond the file size are rejected before any multiplication overflows.
  uint64_t room = idx_size_ - kHeaderSize;
  if (n > room / 12 || d > room / 8 || n * 12 + d * 8 != room) {
    return bad(absl::StrCat("sequence count ", n, " and doc_idx count ", d,
                            " need ", kHeaderSize, " + 12*", n, " + 8*", d,
                            " bytes, file has ", idx_size_));
  }
  if (d < 1) return bad("doc_idx is empty, expected at least [0]");
  num_sequences_ = static_cast<int64_t>(n);
  num_doc_idx_ = static_cast<int64_t>(d);
  sizes_ = base + kHeaderSize;
  pointers_ = sizes_ + 4 * n;
  doc_idx_ = pointers_ + 8 * n;
  const uint64_t elem = IndexedDtypeSize(dtype_);
  for (int64_t i = 0; i < num_sequences_; ++i) {
    int32_t size = sequence_length(i);
    int64_t ptr = pointer(i);
    if (size < 0) return bad(absl::StrCat("sizes[", i, "] = ", size, " < 0"));
    if (ptr < 0 || static_cast<uint64_t>(ptr) > bin_size_ ||
        static_cast<uint64_t>(size) * elem >
            bin_size_ - static_cast<uint64_t>(ptr)) {
      return bad(absl::StrCat("sequence ", i, " (pointer ", ptr, ", ", size,
                              " tokens) lies outside the .bin file of ",
                              bin_size_, " bytes"));
    }
    if (ptr % static_cast<int64_t>(elem) != 0) {
      return bad(absl::StrCat("pointers[", i, "] = ", ptr,
                              " is not a multiple of the element size ", elem));
    }
  }
  if (document_start(0) != 0) {
    return bad(
        absl::StrCat("doc_idx[0] = ", document_start(0), ", expected 0"));
  }
  for (int64_t k = 1; k < num_doc_idx_; ++k) {
    if (document_start(k) < document_start(k - 1) ||
        document_start(k) > num_sequences_) {
      return bad(absl::StrCat(
          "doc_idx[", k, "] = ", document_start(k), " is not in [doc_idx[",
          k - 1, "] = ", document_start(k - 1), ", ", num_sequences_, "]"));
    }
  }
  if (document_start(num_doc_idx_ - 1) != num_sequences_) {
    return bad(absl::StrCat("last doc_idx entry is ",
                            document_start(num_doc_idx_ - 1),
                            ", expected the sequence count ", num_sequences_));
  }
  return absl::OkStatus();
}

absl::Span<const uint8_t> IndexedDataset::RawSequence(int64_t i) const {
  const auto* bin = static_cast<const uint8_t*>(bin_map_);
  size_t len =
      static_cast<size_t>(sequence_length(i)) * IndexedDtypeSize(dtype_);
  if (len == 0) return {};
  return absl::MakeConstSpan(bin + pointer(i), len);
}

void IndexedDataset::AppendSequence(int64_t i,
                                    std::vector<int64_t>* out) const {
  absl::Span<const uint8_t> raw = RawSequence(i);
  const uint8_t* p = raw.data();
  int64_t count = sequence_length(i);
  out->reserve(out->size() + static_cast<size_t>(count));
  for (int64_t t = 0; t < count; ++t) {
    int64_t v = 0;
    switch (dtype_) {
      case IndexedDtype::kUint8:
        v = p[t];
        break;
      case IndexedDtype::kInt8:
        v = Load<int8_t>(p + t);
        break;
      case IndexedDtype::kInt16:
        v = Load<int16_t>(p + 2 * t);
        break;
      case IndexedDtype::kUint16:
        v = Load<uint16_t>(p + 2 * t);
        break;
      case IndexedDtype::kInt32:
        v = Load<int32_t>(p + 4 * t);
        break;
      case IndexedDtype::kInt64:
        v = Load<int64_t>(p + 8 * t);
        break;
      case IndexedDtype::kFloat32:
        v = static_cast<int64_t>(Load<float>(p + 4 * t));
        break;
      case IndexedDtype::kFloat64:
        v = static_cast<int64_t>(Load<double>(p + 8 * t));
        break;
    }
    out->push_back(v);
  }
}

absl::StatusOr<std::vector<int64_t>> IndexedDataset::Sequence(int64_t i) const {
  if (i < 0 || i >= num_sequences_) {
    return absl::OutOfRangeError(
        absl::StrCat("sequence ", i, " not in [0, ", num_sequences_, ")"));
  }
  std::vector<int64_t> out;
  AppendSequence(i, &out);
  return out;
}

absl::StatusOr<std::vector<int64_t>> IndexedDataset::Document(int64_t k) const {
  if (k < 0 || k >= num_documents()) {
    return absl::OutOfRangeError(
        absl::StrCat("document ", k, " not in [0, ", num_documents(), ")"));
  }
  std::vector<int64_t> out;
  for (int64_t i = document_start(k); i < document_start(k + 1); ++i) {
    AppendSequence(i, &out);
  }
  return out;
}

// ---------------------------------------------------------------- writer

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (bin_ != nullptr) {
    std::fclose(bin_);
    std::remove((prefix_ + ".bin.tmp").c_str());
  }
}

absl::StatusOr<std::unique_ptr<IndexedDatasetWriter>>
IndexedDatasetWriter::Open(const std::string& prefix, IndexedDtype dtype) {
  if (IndexedDtypeSize(dtype) == 0) {
    return absl::InvalidArgumentError("unknown IndexedDtype");
  }
  std::unique_ptr<IndexedDatasetWriter> w(new IndexedDatasetWriter());
  w->prefix_ = prefix;
  w->dtype_ = dtype;
  std::string tmp = prefix + ".bin.tmp";
  w->bin_ = std::fopen(tmp.c_str(), "wb");
  if (w->bin_ == nullptr) return ErrnoToStatus(errno, "create " + tmp);
  return w;
}

absl::Status IndexedDatasetWriter::AddSequence(
    absl::Span<const int64_t> tokens) {
  if (closed_) return absl::FailedPreconditionError("writer is closed");
  if (tokens.size() >
      static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::OutOfRangeError("sequence longer than INT32_MAX tokens");
  }
  const size_t elem = IndexedDtypeSize(dtype_);
  scratch_.resize(tokens.size() * elem);
  uint8_t* p = scratch_.data();
  auto check = [&](int64_t v, int64_t lo, int64_t hi) -> absl::Status {
    if (v < lo || v > hi) {
      return absl::OutOfRangeError(absl::StrCat(
          "token ", v, " does not fit dtype code ", static_cast<int>(dtype_)));
    }
    return absl::OkStatus();
  };
  for (size_t t = 0; t < tokens.size(); ++t) {
    int64_t v = tokens[t];
    switch (dtype_) {
      case IndexedDtype::kUint8: {
        LFT_RETURN_IF_ERROR(check(v, 0, 255));
        p[t] = static_cast<uint8_t>(v);
        break;
      }
      case IndexedDtype::kInt8: {
        LFT_RETURN_IF_ERROR(check(v, -128, 127));
        int8_t x = static_cast<int8_t>(v);
        std::memcpy(p + t, &x, 1);
        break;
      }
      case IndexedDtype::kInt16: {
        LFT_RETURN_IF_ERROR(check(v, -32768, 32767));
        int16_t x = static_cast<int16_t>(v);
        std::memcpy(p + 2 * t, &x, 2);
        break;
      }
      case IndexedDtype::kUint16: {
        LFT_RETURN_IF_ERROR(check(v, 0, 65535));
        uint16_t x = static_cast<uint16_t>(v);
        std::memcpy(p + 2 * t, &x, 2);
        break;
      }
      case IndexedDtype::kInt32: {
        LFT_RETURN_IF_ERROR(check(v, std::numeric_limits<int32_t>::min(),
                                  std::numeric_limits<int32_t>::max()));
        int32_t x = static_cast<int32_t>(v);
        std::memcpy(p + 4 * t, &x, 4);
        break;
      }
      case IndexedDtype::kInt64:
        std::memcpy(p + 8 * t, &v, 8);
        break;
      case IndexedDtype::kFloat32: {
        float x = static_cast<float>(v);
        std::memcpy(p + 4 * t, &x, 4);
        break;
      }
      case IndexedDtype::kFloat64: {
        double x = static_cast<double>(v);
        std::memcpy(p + 8 * t, &x, 8);
        break;
      }
    }
  }
  if (!scratch_.empty() && std::fwrite(scratch_.data(), 1, scratch_.size(),
                                       bin_) != scratch_.size()) {
    return ErrnoToStatus(errno, "write " + prefix_ + ".bin.tmp");
  }
  sizes_.push_back(static_cast<int32_t>(tokens.size()));
  pointers_.push_back(bin_bytes_);
  bin_bytes_ += static_cast<int64_t>(scratch_.size());
  return absl::OkStatus();
}

void IndexedDatasetWriter::EndDocument() {
  doc_idx_.push_back(static_cast<int64_t>(sizes_.size()));
}

absl::Status IndexedDatasetWriter::Close() {
  if (closed_) return absl::FailedPreconditionError("writer is closed");
  closed_ = true;
  if (doc_idx_.back() != static_cast<int64_t>(sizes_.size())) EndDocument();
  if (std::fflush(bin_) != 0 || fsync(fileno(bin_)) != 0) {
    return ErrnoToStatus(errno, "flush " + prefix_ + ".bin.tmp");
  }
  std::fclose(bin_);
  bin_ = nullptr;
  std::string idx;
  auto put = [&idx](const void* p, size_t n) {
    idx.append(static_cast<const char*>(p), n);
  };
  put(kMagic, 9);
  uint64_t version = 1;
  put(&version, 8);
  uint8_t code = static_cast<uint8_t>(dtype_);
  put(&code, 1);
  uint64_t n = sizes_.size(), d = doc_idx_.size();
  put(&n, 8);
  put(&d, 8);
  put(sizes_.data(), 4 * n);
  put(pointers_.data(), 8 * n);
  put(doc_idx_.data(), 8 * d);
  if (std::rename((prefix_ + ".bin.tmp").c_str(), (prefix_ + ".bin").c_str()) !=
      0) {
    return ErrnoToStatus(errno, "rename to " + prefix_ + ".bin");
  }
  return WriteFileAtomically(prefix_ + ".idx", idx);
}

}  // namespace lft
