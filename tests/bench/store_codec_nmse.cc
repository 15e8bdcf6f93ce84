// Prints, for each tensor codec, the error it adds to hidden states and
// what it costs: bytes per token (one tensor; a pair is twice that), NMSE =
// sum (decode(encode(x)) - x)^2 / sum x^2, the worst per-row relative
// error, and single-thread encode/decode speed.
//
//   store_codec_nmse                       # synthetic rows (default)
//   store_codec_nmse --safetensors F --tensor NAME   # real states [N, H] F32
//
// Synthetic rows imitate transformer hidden states: Gaussian channels with
// a per-row scale drawn log-uniformly over 1..8 and a few "massive
// activation" channels 50x larger, which is what stresses per-row fp8.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/tensor/safetensors.h"
#include "common/tensor/tensor_codec.h"

namespace {

struct Args {
  std::string safetensors;
  std::string tensor;
  size_t rows = 4096;
  size_t cols = 1024;
};

double Seconds(std::chrono::steady_clock::time_point a,
               std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      return i + 1 < argc ? argv[++i] : std::string();
    };
    if (a == "--safetensors")
      args.safetensors = next();
    else if (a == "--tensor")
      args.tensor = next();
    else if (a == "--rows")
      args.rows = std::stoul(next());
    else if (a == "--cols")
      args.cols = std::stoul(next());
    else {
      std::fprintf(stderr,
                   "usage: %s [--safetensors FILE --tensor NAME] "
                   "[--rows N --cols H]\n",
                   argv[0]);
      return 2;
    }
  }
  std::vector<float> x;
  std::string source;
  if (!args.safetensors.empty()) {
    auto file = lft::SafetensorsFile::Open(args.safetensors);
    if (!file.ok()) {
      std::fprintf(stderr, "%s\n", file.status().ToString().c_str());
      return 1;
    }
    auto t = args.tensor.empty()
                 ? absl::StatusOr<lft::TensorView>((*file)->tensors().at(0))
                 : (*file)->Get(args.tensor);
    if (!t.ok() || t->dtype != lft::DType::kF32 || t->shape.size() != 2) {
      std::fprintf(
          stderr, "need a 2-D F32 tensor [N, H] (got %s)\n",
          t.ok() ? "another dtype or rank" : t.status().ToString().c_str());
      return 1;
    }
    args.rows = static_cast<size_t>(t->shape[0]);
    args.cols = static_cast<size_t>(t->shape[1]);
    x.resize(args.rows * args.cols);
    std::memcpy(x.data(), t->data.data(), x.size() * 4);
    source = args.safetensors + ":" + t->name;
  } else {
    std::mt19937 rng(1234);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    std::uniform_real_distribution<float> unif(0.0f, 3.0f);
    x.resize(args.rows * args.cols);
    for (size_t r = 0; r < args.rows; ++r) {
      const float scale = std::exp2(unif(rng));
      for (size_t c = 0; c < args.cols; ++c) {
        float v = gauss(rng) * scale;
        if (c % 256 == 7) v *= 50.0f;  // massive-activation channels
        x[r * args.cols + c] = v;
      }
    }
    source =
        "synthetic gaussian rows, log-uniform row scale, 4 outlier "
        "channels/1024";
  }
  std::printf("source: %s  [%zu, %zu]\n\n", source.c_str(), args.rows,
              args.cols);
  std::printf(
      "| codec    | bytes/token | NMSE      | max row rel err | encode GB/s | "
      "decode GB/s |\n");
  std::printf(
      "|----------|-------------|-----------|-----------------|-------------|--"
      "-----------|\n");
  for (lft::TensorCodec codec :
       {lft::TensorCodec::kF32, lft::TensorCodec::kBF16, lft::TensorCodec::kF16,
        lft::TensorCodec::kFp8E4M3}) {
    std::string enc;
    auto t0 = std::chrono::steady_clock::now();
    auto s = lft::EncodeRows(codec, x, args.rows, args.cols, &enc);
    auto t1 = std::chrono::steady_clock::now();
    std::vector<float> y(x.size());
    s.Update(
        lft::DecodeRows(codec, enc, args.rows, args.cols, absl::MakeSpan(y)));
    auto t2 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
    double err = 0, ref = 0, worst = 0;
    for (size_t r = 0; r < args.rows; ++r) {
      double re = 0, rr = 0;
      for (size_t c = 0; c < args.cols; ++c) {
        const double d =
            static_cast<double>(y[r * args.cols + c]) - x[r * args.cols + c];
        re += d * d;
        rr += static_cast<double>(x[r * args.cols + c]) * x[r * args.cols + c];
      }
      err += re;
      ref += rr;
      if (rr > 0) worst = std::max(worst, std::sqrt(re / rr));
    }
    const double gb = static_cast<double>(x.size()) * 4 / 1e9;
    std::printf("| %-8s | %11.1f | %9.3e | %15.3e | %11.2f | %11.2f |\n",
                std::string(lft::TensorCodecName(codec)).c_str(),
                static_cast<double>(enc.size()) / args.rows, err / ref, worst,
                gb / Seconds(t0, t1), gb / Seconds(t1, t2));
  }
  return 0;
}
