// Minimal PNG encoder (8-bit RGB, one zlib-compressed IDAT) so docs figures
// need no plotting package. Torch-free.
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
  // Fills the rectangle [x0, x1] x [y0, y1] (inclusive).
  void FillRect(int x0, int y0, int x1, int y1, uint8_t r, uint8_t g,
                uint8_t b);
  // Draws `text` in a 5x7 pixel font (each glyph 6 * scale pixels wide),
  // top-left corner at (x, y). Letters are drawn upper-case; characters
  // outside [0-9A-Za-z .,:;=+-_()[]/|%<>*#'] appear as a box.
  void Text(int x, int y, const std::string& text, uint8_t r, uint8_t g,
            uint8_t b, int scale = 1);
  // Width in pixels of Text(text) at `scale`.
  static int TextWidth(const std::string& text, int scale = 1);
  // The PNG file image.
  std::string EncodePng() const;
  // Writes EncodePng() atomically to `path`.
  absl::Status WritePng(const std::string& path) const;

 private:
  int width_, height_;
  std::vector<uint8_t> rgb_;
};

// A rectangular plot area and the data range it shows. X()/Y() map data to
// pixel coordinates (y grows downwards in pixels, upwards in data).
struct PlotArea {
  int left = 60, top = 30, width = 400, height = 250;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  double X(double x) const;
  double Y(double y) const;
};

// Draws the frame of `area`, `x_ticks` and `y_ticks` evenly spaced ticks
// with numeric labels (%.3g) along the bottom and left edges, and the axis
// titles below and above the frame.
void DrawAxes(RgbImage* image, const PlotArea& area, const std::string& x_title,
              const std::string& y_title, int x_ticks = 5, int y_ticks = 5);

// A perceptual colour scale (viridis-like: dark blue -> green -> yellow)
// for v in [0, 1] (clamped).
void ColorScale(double v, uint8_t* r, uint8_t* g, uint8_t* b);

}  // namespace lft

#endif  // LFT_WORKER_MODEL_PNG_WRITER_H_
