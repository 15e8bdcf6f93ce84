#include "common/tensor/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kF64, "F64", 8}, {DType::kI32, "I32", 4}, {DType::kI64, "I64", 8},
    {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},   {DType::kBool, "BOOL", 1},
};

const DTypeInfo& Info(DType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[0];  // unreachable: every enumerator is listed
}

// Product of `shape` times `item_size`, or an error on overflow.
absl::StatusOr<uint64_t> ByteSize(const std::vector<int64_t>& shape,
                                  size_t item_size) {
  uint64_t bytes = item_size;
  for (int64_t dim : shape) {
    if (dim < 0) return absl::InvalidArgumentError("negative dimension");
    if (dim != 0 && bytes > std::numeric_limits<uint64_t>::max() /
                                static_cast<uint64_t>(dim)) {
      return absl::InvalidArgumentError("shape overflows 64 bits");
    }
    bytes *= static_cast<uint64_t>(dim);
  }
  return bytes;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

size_t DTypeSize(DType dtype) { return Info(dtype).size; }
absl::string_view DTypeName(DType dtype) { return Info(dtype).name; }

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& info : kDTypes) {
    if (name == info.name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported dtype \"", name,
      "\" (supported: F32, F16, BF16, F64, I32, I64, I8, U8, BOOL)"));
}

int64_t TensorView::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoToStatus(e, absl::StrCat("stat ", path));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->label_ = path;
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::DataLossError(
        absl::StrCat(path, ": file is ", size,
                     " bytes, too short for the 8-byte header length"));
  }
  // Read, not mmap'd: a mapping faults (SIGBUS, killing the process) when
  // the file is truncated under it, and a worker keeps its teacher for many
  // tasks. Reading costs the same one pass over the bytes; a file that
  // shrinks while being read is reported as such.
  file->owned_bytes_.resize(size);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, file->owned_bytes_.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      return ErrnoToStatus(e, absl::StrCat("read ", path));
    }
    if (n == 0) {
      ::close(fd);
      return absl::DataLossError(
          absl::StrCat(path, ": file shrank from ", size, " to ", done,
                       " bytes while being read (truncated or rewritten)"));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  LFT_RETURN_IF_ERROR(file->Parse(
      reinterpret_cast<const uint8_t*>(file->owned_bytes_.data()), size));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, std::string label) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->label_ = std::move(label);
  file->owned_bytes_ = std::move(bytes);
  if (file->owned_bytes_.size() < 8) {
    return absl::DataLossError(
        absl::StrCat(file->label_, ": file is ", file->owned_bytes_.size(),
                     " bytes, too short for the 8-byte header length"));
  }
  LFT_RETURN_IF_ERROR(
      file->Parse(reinterpret_cast<const uint8_t*>(file->owned_bytes_.data()),
                  file->owned_bytes_.size()));
  return file;
}

absl::Status SafetensorsFile::Parse(const uint8_t* base, size_t size) {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": header length ", header_len,
                     " exceeds the limit of ", kMaxSafetensorsHeaderBytes,
                     " bytes (corrupt or not a safetensors file)"));
  }
  if (header_len > size - 8) {
    return absl::DataLossError(
        absl::StrCat(label_, ": truncated: header claims ", header_len,
                     " bytes but only ", size - 8, " follow the length field"));
  }
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  nlohmann::json header =
      nlohmann::json::parse(header_begin, header_begin + header_len, nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": header is not valid JSON"));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(label_, ": header is not a JSON object"));
  }
  const uint8_t* data_begin = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(label_, ": __metadata__ is not an object"));
      }
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          return absl::InvalidArgumentError(absl::StrCat(
              label_, ": __metadata__[\"", m.key(), "\"] is not a string"));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat(label_, ": tensor \"", name, "\": ", why));
    };
    if (!entry.is_object()) return bad("entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      return bad("missing string field \"dtype\"");
    }
    if (shape_it == entry.end() || !shape_it->is_array()) {
      return bad("missing array field \"shape\"");
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() ||
        offsets_it->size() != 2) {
      return bad("\"data_offsets\" must be an array [begin, end]");
    }
    auto dtype = ParseDType(dtype_it->get<std::string>());
    if (!dtype.ok()) return bad(dtype.status().message());
    TensorView view;
    view.name = name;
    view.dtype = *dtype;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) {
        return bad(absl::StrCat("shape entry ", dim.dump(),
                                " is not a non-negative integer"));
      }
      uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad("shape entry too large");
      }
      view.shape.push_back(static_cast<int64_t>(d));
    }
    for (const auto& off : *offsets_it) {
      if (!off.is_number_unsigned()) {
        return bad("data_offsets must be non-negative integers");
      }
    }
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end,
                              "] end before they begin"));
    }
    if (end > data_size) {
      return absl::DataLossError(
          absl::StrCat(label_, ": tensor \"", name, "\": data_offsets [", begin,
                       ", ", end, "] run past the end of the data (", data_size,
                       " bytes); the file is truncated or corrupt"));
    }
    auto expected = ByteSize(view.shape, DTypeSize(view.dtype));
    if (!expected.ok()) return bad(expected.status().message());
    if (*expected != end - begin) {
      return bad(absl::StrCat("shape ", ShapeString(view.shape), " of ",
                              DTypeName(view.dtype), " needs ", *expected,
                              " bytes but data_offsets span ", end - begin));
    }
    view.data = absl::MakeConstSpan(data_begin + begin, end - begin);
    tensors_.push_back(std::move(view));
  }

  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorView& a, const TensorView& b) {
              return a.data.data() < b.data.data();
            });
  for (size_t i = 1; i < tensors_.size(); ++i) {
    const TensorView& prev = tensors_[i - 1];
    const TensorView& cur = tensors_[i];
    if (cur.data.data() < prev.data.data() + prev.data.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(label_, ": tensors \"", prev.name, "\" and \"", cur.name,
                       "\" overlap in the data section"));
    }
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  return absl::OkStatus();
}

absl::StatusOr<TensorView> SafetensorsFile::Get(absl::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat(label_, ": no tensor named \"", name, "\""));
  }
  return tensors_[it->second];
}

bool SafetensorsFile::Contains(absl::string_view name) const {
  return index_.find(name) != index_.end();
}

absl::Status SafetensorsWriter::Add(absl::string_view name, DType dtype,
                                    std::vector<int64_t> shape,
                                    absl::Span<const uint8_t> data) {
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor name \"", name, "\""));
  }
  if (entries_.count(std::string(name)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" added twice"));
  }
  auto expected = ByteSize(shape, DTypeSize(dtype));
  if (!expected.ok()) return Annotate(expected.status(), name);
  if (*expected != data.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor \"", name, "\": shape ", ShapeString(shape), " of ",
        DTypeName(dtype), " needs ", *expected, " bytes, got ", data.size()));
  }
  entries_[std::string(name)] = Entry{
      dtype, std::move(shape),
      std::string(reinterpret_cast<const char*>(data.data()), data.size())};
  return absl::OkStatus();
}

void SafetensorsWriter::SetMetadata(absl::string_view key,
                                    absl::string_view value) {
  metadata_[std::string(key)] = std::string(value);
}

std::string SafetensorsWriter::Serialize() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, entry] : entries_) {
    header[name] = {{"dtype", DTypeName(entry.dtype)},
                    {"shape", entry.shape},
                    {"data_offsets", {offset, offset + entry.bytes.size()}}};
    offset += entry.bytes.size();
  }
  std::string header_text = header.dump();
  while ((header_text.size() + 8) % 8 != 0) header_text.push_back(' ');
  std::string out;
  out.reserve(8 + header_text.size() + offset);
  uint64_t len = header_text.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += header_text;
  for (const auto& [name, entry] : entries_) out += entry.bytes;
  return out;
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  return WriteFileAtomically(path, Serialize());
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  size_t written = 0;
  while (written < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoToStatus(e, absl::StrCat("write ", tmp));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoToStatus(e, absl::StrCat("fsync ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoToStatus(e, absl::StrCat("rename to ", path));
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : path.substr(0, slash + (slash == 0));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace lft
