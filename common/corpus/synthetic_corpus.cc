#include "common/corpus/synthetic_corpus.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/split_mix64.h"
#include "common/base/status.h"
#include "common/corpus/jsonl_zst.h"
#include "common/tensor/safetensors.h"

namespace lft {
namespace {

// Draws come from SplitMix64 (common/base/split_mix64.h): identical on every
// platform (std distributions are not, so we never use them here).

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ += kSplitMix64Gamma;
    return SplitMix64Hash(state_);
  }
  // Uniform in [0, n), n > 0.
  int Uniform(int n) {
    return static_cast<int>(Next() % static_cast<uint64_t>(n));
  }
  // Uniform in [lo, hi].
  int Range(int lo, int hi) { return lo + Uniform(hi - lo + 1); }
  template <size_t N>
  const char* Pick(const char* const (&items)[N]) {
    return items[Uniform(static_cast<int>(N))];
  }

 private:
  uint64_t state_;
};

constexpr const char* kNames[] = {"Alice", "Bob",   "Carol", "David",
                                  "Emma",  "Frank", "Grace", "Henry",
                                  "Irene", "Jack",  "Kate",  "Liam"};
constexpr const char* kAdjectives[] = {"red",   "small", "old",    "bright",
                                       "quiet", "heavy", "green",  "tall",
                                       "blue",  "round", "broken", "new"};
constexpr const char* kNouns[] = {"ball",   "book", "lamp",  "cup",
                                  "letter", "key",  "box",   "boat",
                                  "coin",   "map",  "clock", "hat"};
constexpr const char* kPlaces[] = {"in the garden", "near the river",
                                   "at the market", "behind the house",
                                   "on the hill",   "in the kitchen"};
constexpr const char* kVerbs[][2] = {{"sees", "see"},      {"finds", "find"},
                                     {"carries", "carry"}, {"opens", "open"},
                                     {"paints", "paint"},  {"cleans", "clean"}};

// A name from kNames different from `exclude`.
std::string OtherName(Rng& rng, const std::string& exclude) {
  std::string name = rng.Pick(kNames);
  while (name == exclude) name = rng.Pick(kNames);
  return name;
}

// English with state: who holds which object changes as the story goes, and
// questions at the end must be answered from that state.
std::string MakeEnglish(Rng& rng) {
  std::string out;
  int paragraphs = rng.Range(2, 4);
  for (int p = 0; p < paragraphs; ++p) {
    std::map<std::string, std::string> holder;  // "adj noun" -> name
    std::vector<std::string> objects;
    int sentences = rng.Range(8, 16);
    for (int s = 0; s < sentences; ++s) {
      std::string name = rng.Pick(kNames);
      std::string other = OtherName(rng, name);
      int kind = objects.empty() ? 0 : rng.Uniform(6);
      if (kind == 0 || objects.size() < 2) {
        std::string obj =
            absl::StrCat(rng.Pick(kAdjectives), " ", rng.Pick(kNouns));
        if (holder.count(obj) == 0) objects.push_back(obj);
        holder[obj] = name;
        absl::StrAppend(&out, name, " has a ", obj, ". ");
      } else if (kind == 1) {
        const std::string& obj =
            objects[rng.Uniform(static_cast<int>(objects.size()))];
        std::string from = holder[obj];
        std::string to = OtherName(rng, from);
        holder[obj] = to;
        absl::StrAppend(&out, from, " gives the ", obj, " to ", to, ". Now ",
                        to, " has the ", obj, ". ");
      } else if (kind == 2) {
        const auto* v = kVerbs[rng.Uniform(6)];
        absl::StrAppend(&out, name, " and ", other, " ", v[1], " the ",
                        objects[rng.Uniform(static_cast<int>(objects.size()))],
                        " ", rng.Pick(kPlaces), ". ");
      } else if (kind == 3) {
        const auto* v = kVerbs[rng.Uniform(6)];
        absl::StrAppend(&out, "The ", rng.Pick(kAdjectives), " ",
                        rng.Pick(kNouns), " is ", rng.Pick(kPlaces), ", and ",
                        name, " ", v[0], " it. ");
      } else {
        const std::string& obj =
            objects[rng.Uniform(static_cast<int>(objects.size()))];
        absl::StrAppend(&out, "Who has the ", obj, "? ", holder[obj],
                        " has the ", obj, ". ");
      }
    }
    for (const std::string& obj : objects) {
      absl::StrAppend(&out, "\nQ: Who has the ", obj, "?\nA: ", holder[obj],
                      ".");
    }
    out += "\n\n";
  }
  return out;
}

std::string MakeMath(Rng& rng) {
  std::string out;
  int questions = rng.Range(12, 30);
  for (int q = 0; q < questions; ++q) {
    int kind = rng.Uniform(6);
    int a = rng.Range(0, 999), b = rng.Range(1, 999), c = rng.Range(0, 99);
    std::string question, answer;
    switch (kind) {
      case 0:
        question = absl::StrCat("What is ", a, " + ", b, "?");
        answer = absl::StrCat(a + b);
        break;
      case 1:
        question = absl::StrCat("What is ", a, " - ", b, "?");
        answer = absl::StrCat(a - b);
        break;
      case 2: {
        int x = rng.Range(2, 99), y = rng.Range(2, 99);
        question = absl::StrCat("Calculate ", x, " * ", y, ".");
        answer = absl::StrCat(x * y);
        break;
      }
      case 3: {
        int x = rng.Range(-20, 20), m = rng.Range(2, 9);
        question = absl::StrCat("Let x = ", x, ". Let y = x * ", m, " + ", c,
                                ". What is y - ", b % 50, "?");
        answer = absl::StrCat(x * m + c - b % 50);
        break;
      }
      case 4:
        question = absl::StrCat("Which is bigger: ", a, " or ", b, "?");
        answer = absl::StrCat(a >= b ? a : b);
        break;
      default: {
        int d = rng.Range(2, 13);
        question = absl::StrCat("What is the remainder when ", a,
                                " is divided by ", d, "?");
        answer = absl::StrCat(a % d);
        break;
      }
    }
    absl::StrAppend(&out, "Question: ", question, "\nAnswer: ", answer, "\n\n");
  }
  return out;
}

std::string RandomKey(Rng& rng) {
  std::string key;
  int len = rng.Range(3, 5);
  for (int i = 0; i < len; ++i)
    key.push_back(static_cast<char>('a' + rng.Uniform(26)));
  key.push_back(static_cast<char>('0' + rng.Uniform(10)));
  return key;
}

std::string MakeKeyValue(Rng& rng) {
  std::string out = "Records:\n";
  int n = rng.Range(12, 40);
  std::vector<std::pair<std::string, std::string>> records;
  std::map<std::string, bool> seen;
  while (static_cast<int>(records.size()) < n) {
    std::string key = RandomKey(rng);
    if (seen[key]) continue;
    seen[key] = true;
    std::string value =
        rng.Uniform(2) == 0
            ? absl::StrCat(rng.Range(0, 9999))
            : absl::StrCat(rng.Pick(kAdjectives), "-", rng.Pick(kNouns));
    records.emplace_back(key, value);
    absl::StrAppend(&out, key, " = ", value, "\n");
  }
  out += "\n";
  int queries = rng.Range(8, 24);
  for (int q = 0; q < queries; ++q) {
    const auto& r = records[rng.Uniform(n)];
    absl::StrAppend(&out, "Query: ", r.first, "\nAnswer: ", r.second, "\n");
  }
  return out + "\n";
}

std::string MakeBrackets(Rng& rng) {
  static const char kOpen[] = "([{<";
  static const char kClose[] = ")]}>";
  std::string out;
  int lines = rng.Range(15, 40);
  for (int l = 0; l < lines; ++l) {
    int pairs = rng.Range(2, 12);
    std::vector<int> stack;
    std::vector<char> seq;
    int opened = 0;
    while (opened < pairs || !stack.empty()) {
      if (opened < pairs && (stack.empty() || rng.Uniform(2) == 0)) {
        int k = rng.Uniform(4);
        stack.push_back(k);
        seq.push_back(kOpen[k]);
        ++opened;
      } else {
        seq.push_back(kClose[stack.back()]);
        stack.pop_back();
      }
    }
    bool balanced = rng.Uniform(2) == 0;
    if (!balanced) {
      size_t i = static_cast<size_t>(rng.Uniform(static_cast<int>(seq.size())));
      int mode = rng.Uniform(3);
      if (mode == 0) {
        seq.erase(seq.begin() + static_cast<std::ptrdiff_t>(i));
      } else if (mode == 1) {
        // Swap a bracket for a closer of another kind.
        char c = seq[i];
        char replacement = kClose[rng.Uniform(4)];
        if (replacement == c) replacement = c == ')' ? ']' : ')';
        seq[i] = replacement;
      } else {
        seq.insert(seq.begin() + static_cast<std::ptrdiff_t>(i),
                   kOpen[rng.Uniform(4)]);
      }
    }
    // Recompute the verdict and depth from the final sequence.
    std::vector<char> st;
    bool ok = true;
    int depth = 0, max_depth = 0;
    for (char c : seq) {
      const char* o = std::strchr(kOpen, c);
      if (o != nullptr) {
        st.push_back(kClose[o - kOpen]);
        max_depth = std::max(max_depth, static_cast<int>(st.size()));
      } else if (st.empty() || st.back() != c) {
        ok = false;
        break;
      } else {
        st.pop_back();
      }
    }
    if (!st.empty()) ok = false;
    depth = max_depth;
    out += "sequence:";
    for (char c : seq) {
      out.push_back(' ');
      out.push_back(c);
    }
    absl::StrAppend(&out, " | depth: ", depth,
                    " | balanced: ", ok ? "yes" : "no", "\n");
  }
  return out + "\n";
}

std::string MakeCode(Rng& rng) {
  std::string out;
  int snippets = rng.Range(4, 9);
  for (int s = 0; s < snippets; ++s) {
    int kind = rng.Uniform(3);
    if (kind == 0) {
      int k1 = rng.Range(1, 9), k2 = rng.Range(1, 20), t = rng.Range(5, 60);
      int a = rng.Range(0, 9), b = rng.Range(0, 9);
      std::string fn = absl::StrCat("f_", rng.Range(0, 99));
      int x = a + k1, y = x * b;
      if (y > t) y = y - k2;
      absl::StrAppend(&out, "def ", fn, "(a, b):\n    x = a + ", k1,
                      "\n    y = x * b\n    if y > ", t, ":\n        y = y - ",
                      k2, "\n    return y\n\n\nprint(", fn, "(", a, ", ", b,
                      "))  # ", y, "\n\n");
    } else if (kind == 1) {
      int n = rng.Range(2, 9), m = rng.Range(1, 5), c = rng.Range(0, 9);
      int total = c;
      for (int i = 0; i < n; ++i) total += i * m;
      const char* var = rng.Uniform(2) == 0 ? "total" : "acc";
      absl::StrAppend(&out, var, " = ", c, "\nfor i in range(", n, "):\n    ",
                      var, " += i * ", m, "\nprint(", var, ")  # ", total,
                      "\n\n");
    } else {
      const char* names[] = {"p", "q", "r", "s", "t"};
      int vals[5];
      vals[0] = rng.Range(0, 20);
      absl::StrAppend(&out, "p = ", vals[0], "\n");
      int lines = rng.Range(2, 4);
      for (int i = 1; i <= lines; ++i) {
        int src = rng.Uniform(i);
        int k = rng.Range(1, 9);
        bool mul = rng.Uniform(3) == 0;
        vals[i] = mul ? vals[src] * k : vals[src] + k;
        absl::StrAppend(&out, names[i], " = ", names[src], mul ? " * " : " + ",
                        k, "\n");
      }
      absl::StrAppend(&out, "assert ", names[lines], " == ", vals[lines],
                      "\n\n");
    }
  }
  return out;
}

}  // namespace

SyntheticDocument MakeSyntheticDocument(uint64_t seed, int64_t index) {
  Rng rng(SplitMix64Hash(
      seed ^ SplitMix64Hash(static_cast<uint64_t>(index) + 0x5EEDull)));
  SyntheticDocument doc;
  int pick = rng.Uniform(100);
  if (pick < 30) {
    doc.pile_set_name = "SyntheticEnglish";
    doc.text = MakeEnglish(rng);
  } else if (pick < 50) {
    doc.pile_set_name = "SyntheticMath";
    doc.text = MakeMath(rng);
  } else if (pick < 65) {
    doc.pile_set_name = "SyntheticKeyValue";
    doc.text = MakeKeyValue(rng);
  } else if (pick < 80) {
    doc.pile_set_name = "SyntheticBrackets";
    doc.text = MakeBrackets(rng);
  } else {
    doc.pile_set_name = "SyntheticCode";
    doc.text = MakeCode(rng);
  }
  while (!doc.text.empty() && doc.text.back() == '\n') doc.text.pop_back();
  return doc;
}

int SyntheticDocumentSplit(uint64_t seed, int64_t index) {
  uint64_t h = SplitMix64Hash(SplitMix64Hash(seed + 0xC0FFEEull) ^
                              static_cast<uint64_t>(index)) %
               100;
  if (h < 2) return 1;
  if (h < 4) return 2;
  return 0;
}

absl::StatusOr<SyntheticCorpusStats> WriteSyntheticCorpus(
    const std::string& dir, const SyntheticCorpusOptions& options) {
  if (options.documents < 1 || options.train_shards < 1 ||
      options.train_shards > 1000) {
    return absl::InvalidArgumentError(
        "SyntheticCorpusOptions: documents >= 1 and train_shards in [1, 1000]");
  }
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "train", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("create ", dir, "/train: ", ec.message()));
  }
  std::vector<std::string> names;
  for (int s = 0; s < options.train_shards; ++s) {
    names.push_back(absl::StrFormat("train/%02d.jsonl.zst", s));
  }
  names.push_back("val.jsonl.zst");
  names.push_back("test.jsonl.zst");
  std::vector<std::unique_ptr<JsonlZstWriter>> writers;
  for (const std::string& name : names) {
    LFT_ASSIGN_OR_RETURN(
        auto w,
        JsonlZstWriter::Open(dir + "/" + name, options.compression_level));
    writers.push_back(std::move(w));
  }
  const int val = options.train_shards, test = options.train_shards + 1;
  std::vector<int64_t> chars(names.size(), 0);
  std::map<std::string, std::vector<int64_t>> subset_docs;  // per split
  std::map<std::string, int64_t> subset_chars;
  int64_t train_seen = 0;
  SyntheticCorpusStats stats;
  for (int64_t i = 0; i < options.documents; ++i) {
    SyntheticDocument doc = MakeSyntheticDocument(options.seed, i);
    int split = SyntheticDocumentSplit(options.seed, i);
    int target = split == 1 ? val
                 : split == 2
                     ? test
                     : static_cast<int>(train_seen++ % options.train_shards);
    LFT_RETURN_IF_ERROR(writers[target]->Write(doc.text, doc.pile_set_name));
    chars[target] += static_cast<int64_t>(doc.text.size());
    auto& counts = subset_docs[doc.pile_set_name];
    counts.resize(3, 0);
    ++counts[split];
    subset_chars[doc.pile_set_name] += static_cast<int64_t>(doc.text.size());
    stats.text_bytes += static_cast<int64_t>(doc.text.size());
  }
  stats.documents = options.documents;
  std::string manifest = absl::StrCat(
      "# Synthetic Pile-format corpus\n\n"
      "Generated by `lft-make-corpus --seed ",
      options.seed, " --documents ", options.documents, " --train-shards ",
      options.train_shards,
      "` (common/corpus/synthetic_corpus.cc). Same format as The Pile: "
      "zstd-compressed "
      "JSON Lines, `{\"text\": ..., \"meta\": {\"pile_set_name\": ...}}`. "
      "Deterministic: the same seed gives the same bytes. Split by a hash of "
      "(seed, document index): 2% val, 2% test, the rest train (round-robin "
      "over the train shards).\n\n"
      "| file | bytes | documents | text bytes |\n|---|---:|---:|---:|\n");
  for (size_t k = 0; k < names.size(); ++k) {
    int64_t docs = writers[k]->documents();
    LFT_RETURN_IF_ERROR(writers[k]->Close());
    std::error_code size_ec;
    auto bytes = std::filesystem::file_size(dir + "/" + names[k], size_ec);
    if (size_ec) {
      return absl::UnavailableError(absl::StrCat("stat ", dir, "/", names[k]));
    }
    stats.compressed_bytes += static_cast<int64_t>(bytes);
    stats.files.push_back(names[k]);
    absl::StrAppend(&manifest, "| ", names[k], " | ", bytes, " | ", docs, " | ",
                    chars[k], " |\n");
  }
  absl::StrAppend(&manifest,
                  "\n| pile_set_name | train / val / test docs | text bytes |\n"
                  "|---|---|---:|\n");
  for (const auto& [name, counts] : subset_docs) {
    absl::StrAppend(&manifest, "| ", name, " | ", counts[0], " / ", counts[1],
                    " / ", counts[2], " | ", subset_chars[name], " |\n");
  }
  LFT_RETURN_IF_ERROR(WriteFileAtomically(dir + "/MANIFEST.md", manifest));
  stats.files.push_back("MANIFEST.md");
  return stats;
}

}  // namespace lft
