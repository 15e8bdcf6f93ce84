// lft-make-corpus: writes the synthetic Pile-format corpus.
//
//   lft-make-corpus --seed S --documents N --out DIR [--train-shards K]
//                   [--level L]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "common/corpus/synthetic_corpus.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: lft-make-corpus --seed S --documents N --out DIR "
               "[--train-shards K] [--level L]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  lft::SyntheticCorpusOptions options;
  std::string out;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string value = argv[++i];
    bool ok = true;
    if (flag == "--seed") {
      ok = absl::SimpleAtoi(value, &options.seed);
    } else if (flag == "--documents") {
      ok = absl::SimpleAtoi(value, &options.documents);
    } else if (flag == "--out") {
      out = value;
    } else if (flag == "--train-shards") {
      ok = absl::SimpleAtoi(value, &options.train_shards);
    } else if (flag == "--level") {
      ok = absl::SimpleAtoi(value, &options.compression_level);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return Usage();
    }
    if (!ok) {
      std::fprintf(stderr, "bad value for %s: %s\n", flag.c_str(),
                   value.c_str());
      return Usage();
    }
  }
  if (out.empty()) return Usage();
  absl::Time start = absl::Now();
  auto stats = lft::WriteSyntheticCorpus(out, options);
  if (!stats.ok()) {
    std::fprintf(stderr, "lft-make-corpus: %s\n",
                 stats.status().ToString().c_str());
    return 1;
  }
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf(
      "wrote %lld documents, %lld text bytes, %lld compressed bytes to %s in "
      "%.2f s\n",
      static_cast<long long>(stats->documents),
      static_cast<long long>(stats->text_bytes),
      static_cast<long long>(stats->compressed_bytes), out.c_str(), seconds);
  return 0;
}
