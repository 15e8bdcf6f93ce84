// Minimal PNG encoder (8-bit RGB, zlib "stored" blocks, no compression) so
// docs figures need no plotting package. Torch-free.
#ifndef LFT_WORKER_MODEL_PNG_WRITER_H_
#define LFT_WORKER_MODEL_PNG_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace lft {

// An RGB canvas with simple drawing helpers (pixel coordinates, origin top
// left; out-of-range pixels are clipped).
class RgbImage {
 public:
  RgbImage(int width, int height, uint8_t r = 255, uint8_t g = 255,
           uint8_t b = 255);
  int width() const { return width_; }
  int height() const { return height_; }
  void Set(int x, int y, uint8_t r, uint8_t g, uint8_t b);
  void Line(double x0, double y0, double x1, double y1, uint8_t r, uint8_t g,
            uint8_t b);
  void Dot(double x, double y, int radius, uint8_t r, uint8_t g, uint8_t b);
  // The PNG file image.
  std::string EncodePng() const;
  // Writes EncodePng() atomically to `path`.
  absl::Status WritePng(const std::string& path) const;

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

}  // namespace lft

#endif  // LFT_WORKER_MODEL_PNG_WRITER_H_
