// lft-toy2d: runs the 2D toy study (SFM, FW k=3, hybrid alpha) and writes a
// PNG of the trajectories.
// Usage: lft-toy2d [out.png] [train_steps] [lr] [hidden] [batch]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/model/toy2d.h"

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "toy2d.png";
  const long steps = argc > 2 ? std::atol(argv[2]) : 1500;
  std::vector<lft::Toy2dResult> results;
  std::printf(
      "| method | loss | endpoint error (k=3) | swap rate | path length / "
      "chord |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const char* method : {"sfm", "fw", "hybrid"}) {
    lft::Toy2dOptions o;
    o.method = method;
    o.train_steps = steps;
    if (argc > 3) o.lr = std::atof(argv[3]);
    if (argc > 4) o.hidden = std::atol(argv[4]);
    if (argc > 5) o.batch = std::atol(argv[5]);
    auto r = lft::RunToy2d(o);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    std::printf("| %s | %.4f | %.3f | %.3f | %.3f |\n", r->method.c_str(),
                r->final_loss, r->endpoint_error, r->swap_rate, r->path_ratio);
    results.push_back(*r);
  }
  auto s = lft::WriteToy2dPng(results, out);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s\n", out.c_str());
  return 0;
}
