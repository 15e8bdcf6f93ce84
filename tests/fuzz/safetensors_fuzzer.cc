// libFuzzer target: SafetensorsFile::FromBytes on arbitrary bytes (header
// length, JSON header, dtypes, shapes, offsets), then every tensor view is
// read end to end. Any accepted file must have views inside the image.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = lft::SafetensorsFile::FromBytes(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) return 0;
  uint64_t sum = 0;
  for (const lft::TensorView& view : (*file)->tensors()) {
    for (uint8_t b : view.data) sum += b;
    (void)view.NumElements();
    (void)(*file)->Get(view.name);
  }
  return sum == 0xFFFFFFFFFFFFFFFFull ? 1 : 0;
}
