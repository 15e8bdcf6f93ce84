// lft-toy2d: runs the 2D toy study (SFM, FW k=3, hybrid alpha) and writes a
// PNG of the trajectories.
// Usage: lft-toy2d [out.png] [train_steps] [lr] [hidden] [batch]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/base/flags.h"
#include "worker/model/toy2d.h"

namespace {

constexpr char kSynopsis[] =
    "lft-toy2d [OUT.png] [TRAIN_STEPS] [LR] [HIDDEN] [BATCH]";

const std::vector<lft::FlagSpec>& Toy2dFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"help", "",
           "print this text and exit (arguments: the PNG to write, default "
           "toy2d.png; training steps, default 1500; then the learning "
           "rate, hidden width and batch of lft::Toy2dOptions)"},
      };
  return *flags;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), Toy2dFlags());
  const std::string usage = lft::Flags::Usage(kSynopsis, Toy2dFlags());
  if (flags.ok() && flags->Has("help")) {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  if (!flags.ok() || flags->positional().size() > 5) {
    std::fprintf(stderr, "lft-toy2d: %s\n\n%s",
                 flags.ok() ? "takes at most 5 arguments"
                            : std::string(flags.status().message()).c_str(),
                 usage.c_str());
    return 2;
  }
  const std::vector<std::string>& args = flags->positional();
  const std::string out = args.size() > 0 ? args[0] : "toy2d.png";
  const long steps = args.size() > 1 ? std::atol(args[1].c_str()) : 1500;
  std::vector<lft::Toy2dResult> results;
  std::printf(
      "| method | loss | endpoint error (k=3) | swap rate | path length / "
      "chord |\n");
  std::printf("|---|---|---|---|---|\n");
  for (const char* method : {"sfm", "fw", "hybrid"}) {
    lft::Toy2dOptions o;
    o.method = method;
    o.train_steps = steps;
    if (args.size() > 2) o.lr = std::atof(args[2].c_str());
    if (args.size() > 3) o.hidden = std::atol(args[3].c_str());
    if (args.size() > 4) o.batch = std::atol(args[4].c_str());
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
