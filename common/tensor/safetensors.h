// Reader and writer for the safetensors format (HF's weight files).
//
// Layout: an 8-byte little-endian header length N, N bytes of a JSON object
// mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the end of the header) and an optional
// "__metadata__" string map, then the raw little-endian tensor bytes.
//
// The reader reads the file once into memory it owns and hands out views into
// it, so loading copies nothing after that read. It does not mmap: a mapped
// file truncated under a running worker (which keeps its teacher for many
// tasks) would kill it with SIGBUS. Every field of the header is validated
// before any view is handed out: a truncated file, an oversized header, an
// unknown dtype, a size that disagrees with the shape, or overlapping tensors
// produce an error naming the file and tensor, never a crash.
#ifndef LFT_COMMON_TENSOR_SAFETENSORS_H_
#define LFT_COMMON_TENSOR_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lft {

enum class DType { kF32, kF16, kBF16, kF64, kI32, kI64, kI8, kU8, kBool };

// Bytes per element.
size_t DTypeSize(DType dtype);
// The safetensors spelling: "F32", "BF16", ...
absl::string_view DTypeName(DType dtype);
// InvalidArgument for a name this reader does not support.
absl::StatusOr<DType> ParseDType(absl::string_view name);

// A tensor inside a mapped file. `data` stays valid as long as the
// SafetensorsFile that produced it.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> data;

  int64_t NumElements() const;
};

// The safetensors spec and HF's reader both cap the header at 100 MB; a
// larger length is taken as corruption rather than allocated.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// A parsed, validated safetensors file. Immutable, so safe to share across
// threads.
class SafetensorsFile {
 public:
  // Reads (into memory the file owns; not mmap, so that a file truncated
  // later cannot fault the process) and validates `path`. NotFound if it
  // does not exist; DataLoss if it is truncated or shrinks while being read;
  // InvalidArgument if its header is malformed. The message
  // names the file and, where one is at fault, the tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(
      const std::string& path);
  // Validates an in-memory image (same errors as Open); the file owns it.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(
      std::string bytes, std::string label = "<memory>");

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // Tensors in the order of their data offsets.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // NotFound if there is no tensor called `name`.
  absl::StatusOr<TensorView> Get(absl::string_view name) const;
  bool Contains(absl::string_view name) const;
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  const std::string& label() const { return label_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse(const uint8_t* base, size_t size);

  std::string label_;
  std::string owned_bytes_;  // the file's bytes (Open) or image (FromBytes)
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and writes one safetensors file. Not thread-safe.
class SafetensorsWriter {
 public:
  // Copies `data`. InvalidArgument if the name is empty, reserved
  // ("__metadata__") or already added, or if data.size() disagrees with
  // dtype and shape; the writer is left unchanged then.
  absl::Status Add(absl::string_view name, DType dtype,
                   std::vector<int64_t> shape, absl::Span<const uint8_t> data);
  void SetMetadata(absl::string_view key, absl::string_view value);

  // The complete file image, header padded to 8 bytes as HF does.
  std::string Serialize() const;
  // Writes atomically: a temporary file in the same directory, fsync, then
  // rename over `path`. On error `path` is left as it was.
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::string bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync
// of the directory). On error `path` is left as it was.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

}  // namespace lft

#endif  // LFT_COMMON_TENSOR_SAFETENSORS_H_
