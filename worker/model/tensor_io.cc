#include "worker/model/tensor_io.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/safetensors.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

absl::StatusOr<DType> FromTorch(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat:
      return DType::kF32;
    case torch::kDouble:
      return DType::kF64;
    case torch::kBFloat16:
      return DType::kBF16;
    case torch::kHalf:
      return DType::kF16;
    case torch::kLong:
      return DType::kI64;
    case torch::kInt:
      return DType::kI32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported tensor dtype ", c10::toString(t)));
  }
}

absl::StatusOr<torch::ScalarType> ToTorch(DType d) {
  switch (d) {
    case DType::kF32:
      return torch::kFloat;
    case DType::kF64:
      return torch::kDouble;
    case DType::kBF16:
      return torch::kBFloat16;
    case DType::kF16:
      return torch::kHalf;
    case DType::kI64:
      return torch::kLong;
    case DType::kI32:
      return torch::kInt;
    case DType::kU8:
      return torch::kByte;
    case DType::kI8:
      return torch::kChar;
    case DType::kBool:
      return torch::kBool;
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dtype ", DTypeName(d), " has no torch type"));
}

absl::StatusOr<SafetensorsWriter> BuildWriter(
    const std::map<std::string, torch::Tensor>& tensors,
    absl::string_view where) {
  SafetensorsWriter w;
  for (const auto& [name, t] : tensors) {
    auto dt = FromTorch(t.scalar_type());
    if (!dt.ok())
      return Annotate(dt.status(),
                      absl::StrCat(where, ": tensor \"", name, "\""));
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    LFT_RETURN_IF_ERROR(w.Add(
        name, *dt, c.sizes().vec(),
        absl::Span<const uint8_t>(static_cast<const uint8_t*>(c.data_ptr()),
                                  c.numel() * c.element_size())));
  }
  return w;
}

absl::StatusOr<std::map<std::string, torch::Tensor>> ToTensors(
    const SafetensorsFile& f) {
  std::map<std::string, torch::Tensor> out;
  for (const TensorView& v : f.tensors()) {
    LFT_ASSIGN_OR_RETURN(torch::ScalarType st, ToTorch(v.dtype));
    torch::Tensor t = torch::empty(v.shape, torch::TensorOptions().dtype(st));
    if (!v.data.empty())
      std::memcpy(t.data_ptr(), v.data.data(), v.data.size());
    out[v.name] = t;
  }
  return out;
}

}  // namespace

absl::Status SaveTensors(const std::map<std::string, torch::Tensor>& tensors,
                         const std::string& path) {
  return GuardTorch("SaveTensors", [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(SafetensorsWriter w, BuildWriter(tensors, path));
    return w.WriteFile(path);
  });
}

absl::StatusOr<std::string> SerializeTensors(const TensorBundle& bundle) {
  return GuardTorch("SerializeTensors", [&]() -> absl::StatusOr<std::string> {
    LFT_ASSIGN_OR_RETURN(SafetensorsWriter w,
                         BuildWriter(bundle.tensors, "bundle"));
    for (const auto& [k, v] : bundle.metadata) w.SetMetadata(k, v);
    return w.Serialize();
  });
}

absl::StatusOr<TensorBundle> ParseTensors(absl::string_view bytes) {
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f,
                       SafetensorsFile::FromBytes(std::string(bytes)));
  return GuardTorch("ParseTensors", [&]() -> absl::StatusOr<TensorBundle> {
    TensorBundle b;
    LFT_ASSIGN_OR_RETURN(b.tensors, ToTensors(*f));
    b.metadata = f->metadata();
    return b;
  });
}

absl::StatusOr<std::map<std::string, torch::Tensor>> LoadTensors(
    const std::string& path) {
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> f,
                       SafetensorsFile::Open(path));
  return GuardTorch(
      "LoadTensors",
      [&]() -> absl::StatusOr<std::map<std::string, torch::Tensor>> {
        return ToTensors(*f);
      });
}

}  // namespace lft
