// lft-make-corpus: writes the synthetic Pile-format corpus.
//
//   lft-make-corpus --seed S --documents N --out DIR [--train-shards K]
//                   [--level L]
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/flags.h"
#include "common/corpus/synthetic_corpus.h"

namespace {

const std::vector<lft::FlagSpec>& MakeCorpusFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"out", "DIR", "directory to write the corpus into (required)"},
          {"seed", "S", "seed of the generator (default 1234)"},
          {"documents", "N",
           "documents to write, about 2.5 KB of text each (default 4000)"},
          {"train-shards", "K",
           "training shards DIR/train/NN.jsonl.zst (default 4); val and test "
           "shards are written beside them"},
          {"level", "L", "zstd compression level (default 3)"},
          {"help", "", "print this text and exit"},
      };
  return *flags;
}

constexpr char kSynopsis[] =
    "lft-make-corpus --out DIR [--seed S] [--documents N] [--train-shards K] "
    "[--level L]";

int Usage(const std::string& error) {
  std::fprintf(stderr, "lft-make-corpus: %s\n\n%s", error.c_str(),
               lft::Flags::Usage(kSynopsis, MakeCorpusFlags()).c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), MakeCorpusFlags());
  if (!flags.ok()) return Usage(std::string(flags.status().message()));
  if (flags->Has("help")) {
    std::fputs(lft::Flags::Usage(kSynopsis, MakeCorpusFlags()).c_str(), stdout);
    return 0;
  }
  if (!flags->positional().empty()) {
    return Usage(
        absl::StrCat("unexpected argument \"", flags->positional()[0], "\""));
  }
  lft::SyntheticCorpusOptions options;
  auto seed = flags->GetInt("seed", static_cast<int64_t>(options.seed));
  auto documents =
      flags->GetInt("documents", static_cast<int64_t>(options.documents));
  auto shards =
      flags->GetInt("train-shards", static_cast<int64_t>(options.train_shards));
  auto level = flags->GetInt("level", options.compression_level);
  for (const absl::Status& s :
       {seed.status(), documents.status(), shards.status(), level.status()}) {
    if (!s.ok()) return Usage(std::string(s.message()));
  }
  if (*seed < 0 || *documents < 0 || *shards < 1) {
    return Usage("--seed and --documents must be >= 0 and --train-shards >= 1");
  }
  options.seed = static_cast<decltype(options.seed)>(*seed);
  options.documents = static_cast<decltype(options.documents)>(*documents);
  options.train_shards = static_cast<decltype(options.train_shards)>(*shards);
  options.compression_level =
      static_cast<decltype(options.compression_level)>(*level);
  const std::string out = flags->Get("out");
  if (out.empty()) return Usage("--out DIR is required");
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
