#include "worker/model/png_writer.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "common/tensor/safetensors.h"

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

struct Glyph {
  char c;
  uint8_t rows[7];  // 5 bits each, most significant = leftmost pixel
};

// A 5x7 font in the style of the HD44780 character ROM.
constexpr Glyph kFont[] = {
    {'0', {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}},
    {'1', {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'2', {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}},
    {'3', {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}},
    {'4', {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}},
    {'5', {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}},
    {'6', {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}},
    {'7', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}},
    {'9', {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}},
    {'A', {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'B', {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}},
    {'C', {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}},
    {'D', {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}},
    {'E', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}},
    {'F', {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}},
    {'G', {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}},
    {'H', {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}},
    {'I', {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}},
    {'M', {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'P', {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}},
    {'Q', {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}},
    {'R', {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}},
    {'S', {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}},
    {'T', {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}},
    {'X', {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}},
    {'Z', {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}},
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}},
    {':', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}},
    {';', {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08}},
    {'=', {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}},
    {'-', {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e}},
    {']', {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'|', {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
    {'<', {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}},
    {'>', {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}},
    {'*', {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00}},
    {'#', {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}},
    {'\'', {0x04, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00}},
};

const Glyph* FindGlyph(char c) {
  const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const Glyph& g : kFont) {
    if (g.c == u) return &g;
  }
  return nullptr;
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

void RgbImage::FillRect(int x0, int y0, int x1, int y1, uint8_t r, uint8_t g,
                        uint8_t b) {
  for (int y = std::min(y0, y1); y <= std::max(y0, y1); ++y) {
    for (int x = std::min(x0, x1); x <= std::max(x0, x1); ++x)
      Set(x, y, r, g, b);
  }
}

int RgbImage::TextWidth(const std::string& text, int scale) {
  return static_cast<int>(text.size()) * 6 * scale;
}

void RgbImage::Text(int x, int y, const std::string& text, uint8_t r, uint8_t g,
                    uint8_t b, int scale) {
  static constexpr Glyph kBox = {'?',
                                 {0x1f, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1f}};
  for (size_t i = 0; i < text.size(); ++i) {
    const Glyph* glyph = FindGlyph(text[i]);
    if (glyph == nullptr) glyph = &kBox;
    const int gx = x + static_cast<int>(i) * 6 * scale;
    for (int row = 0; row < 7; ++row) {
      for (int col = 0; col < 5; ++col) {
        if (!(glyph->rows[row] & (0x10 >> col))) continue;
        FillRect(gx + col * scale, y + row * scale,
                 gx + col * scale + scale - 1, y + row * scale + scale - 1, r,
                 g, b);
      }
    }
  }
}

double PlotArea::X(double x) const {
  const double span = x_max > x_min ? x_max - x_min : 1.0;
  return left + (x - x_min) / span * width;
}

double PlotArea::Y(double y) const {
  const double span = y_max > y_min ? y_max - y_min : 1.0;
  return top + height - (y - y_min) / span * height;
}

void DrawAxes(RgbImage* image, const PlotArea& a, const std::string& x_title,
              const std::string& y_title, int x_ticks, int y_ticks) {
  const int l = a.left, t = a.top, r = a.left + a.width, b = a.top + a.height;
  char buf[32];
  for (int i = 0; i < x_ticks; ++i) {
    const double v =
        a.x_min + (a.x_max - a.x_min) * i / std::max(1, x_ticks - 1);
    const double px = a.X(v);
    image->Line(px, b, px, b + 4, 0, 0, 0);
    std::snprintf(buf, sizeof(buf), "%.3g", v);
    image->Text(static_cast<int>(px) - RgbImage::TextWidth(buf) / 2, b + 7, buf,
                0, 0, 0);
  }
  for (int i = 0; i < y_ticks; ++i) {
    const double v =
        a.y_min + (a.y_max - a.y_min) * i / std::max(1, y_ticks - 1);
    const double py = a.Y(v);
    image->Line(l - 4, py, l, py, 0, 0, 0);
    image->Line(l + 1, py, r - 1, py, 225, 225, 225);  // grid
    std::snprintf(buf, sizeof(buf), "%.3g", v);
    image->Text(l - 7 - RgbImage::TextWidth(buf), static_cast<int>(py) - 3, buf,
                0, 0, 0);
  }
  // The frame last, so grid lines do not cover it.
  image->Line(l, t, r, t, 0, 0, 0);
  image->Line(l, b, r, b, 0, 0, 0);
  image->Line(l, t, l, b, 0, 0, 0);
  image->Line(r, t, r, b, 0, 0, 0);
  image->Text(l + a.width / 2 - RgbImage::TextWidth(x_title) / 2, b + 20,
              x_title, 0, 0, 0);
  image->Text(l - 40 > 2 ? l - 40 : 2, t - 14, y_title, 0, 0, 0);
}

void ColorScale(double v, uint8_t* r, uint8_t* g, uint8_t* b) {
  // Anchors of matplotlib's viridis at 0, 0.25, 0.5, 0.75, 1.
  static constexpr double kAnchors[5][3] = {{68, 1, 84},
                                            {59, 82, 139},
                                            {33, 145, 140},
                                            {94, 201, 98},
                                            {253, 231, 37}};
  if (!(v >= 0)) v = 0;  // NaN too
  if (v > 1) v = 1;
  const double pos = v * 4;
  const int i = std::min(3, static_cast<int>(pos));
  const double f = pos - i;
  *r = static_cast<uint8_t>(kAnchors[i][0] +
                            f * (kAnchors[i + 1][0] - kAnchors[i][0]));
  *g = static_cast<uint8_t>(kAnchors[i][1] +
                            f * (kAnchors[i + 1][1] - kAnchors[i][1]));
  *b = static_cast<uint8_t>(kAnchors[i][2] +
                            f * (kAnchors[i + 1][2] - kAnchors[i][2]));
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
