#include "worker/model/png_writer.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>

#include "common/safetensors.h"

namespace lft {
namespace {

void PutBe32(std::string* out, uint32_t v) {
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

void Chunk(std::string* out, const char* type, const std::string& data) {
  PutBe32(out, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  out->append(body);
  PutBe32(out, static_cast<uint32_t>(
                   crc32(0L, reinterpret_cast<const Bytef*>(body.data()),
                         static_cast<uInt>(body.size()))));
}

}  // namespace

RgbImage::RgbImage(int width, int height, uint8_t r, uint8_t g, uint8_t b)
    : width_(width),
      height_(height),
      rgb_(static_cast<size_t>(width) * height * 3) {
  for (size_t i = 0; i < rgb_.size(); i += 3) {
    rgb_[i] = r;
    rgb_[i + 1] = g;
    rgb_[i + 2] = b;
  }
}

void RgbImage::Set(int x, int y, uint8_t r, uint8_t g, uint8_t b) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  const size_t i = (static_cast<size_t>(y) * width_ + x) * 3;
  rgb_[i] = r;
  rgb_[i + 1] = g;
  rgb_[i + 2] = b;
}

void RgbImage::Line(double x0, double y0, double x1, double y1, uint8_t r,
                    uint8_t g, uint8_t b) {
  const int steps =
      static_cast<int>(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
  for (int i = 0; i <= steps; ++i) {
    const double f = static_cast<double>(i) / steps;
    Set(static_cast<int>(std::lround(x0 + f * (x1 - x0))),
        static_cast<int>(std::lround(y0 + f * (y1 - y0))), r, g, b);
  }
}

void RgbImage::Dot(double x, double y, int radius, uint8_t r, uint8_t g,
                   uint8_t b) {
  const int cx = static_cast<int>(std::lround(x)),
            cy = static_cast<int>(std::lround(y));
  for (int dy = -radius; dy <= radius; ++dy) {
    for (int dx = -radius; dx <= radius; ++dx) {
      if (dx * dx + dy * dy <= radius * radius) Set(cx + dx, cy + dy, r, g, b);
    }
  }
}

std::string RgbImage::EncodePng() const {
  // Raw scanlines, each prefixed by filter type 0.
  std::string raw;
  raw.reserve(static_cast<size_t>(height_) * (width_ * 3 + 1));
  for (int y = 0; y < height_; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(
                   &rgb_[static_cast<size_t>(y) * width_ * 3]),
               static_cast<size_t>(width_) * 3);
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zlen, '\0');
  compress2(reinterpret_cast<Bytef*>(&z[0]), &zlen,
            reinterpret_cast<const Bytef*>(raw.data()),
            static_cast<uLong>(raw.size()), 9);
  z.resize(zlen);

  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  PutBe32(&ihdr, static_cast<uint32_t>(width_));
  PutBe32(&ihdr, static_cast<uint32_t>(height_));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB
  Chunk(&png, "IHDR", ihdr);
  Chunk(&png, "IDAT", z);
  Chunk(&png, "IEND", "");
  return png;
}

absl::Status RgbImage::WritePng(const std::string& path) const {
  return WriteFileAtomically(path, EncodePng());
}

}  // namespace lft
