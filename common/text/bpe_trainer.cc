#include "common/text/bpe_trainer.h"

#include <algorithm>
#include <queue>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/unicode.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

uint64_t Key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
         static_cast<uint32_t>(b);
}
int32_t First(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t Second(uint64_t k) { return static_cast<int32_t>(k & 0xffffffffu); }

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// Max-heap entry: higher count first, then the smaller pair key.
struct Candidate {
  int64_t count;
  uint64_t pair;
  bool operator<(const Candidate& o) const {
    return std::tie(count, o.pair) < std::tie(o.count, pair);
  }
};

}  // namespace

void BpeTrainer::AddText(absl::string_view text) {
  const std::string normalized = NfcNormalize(text);
  for (const auto& [begin, end] : SplitGpt2Pretokens(normalized)) {
    ++word_counts_[absl::string_view(normalized).substr(begin, end - begin)];
  }
}

absl::StatusOr<std::string> BpeTrainer::TrainToJson() const {
  const int32_t num_specials =
      static_cast<int32_t>(options_.special_tokens.size());
  if (options_.vocab_size < num_specials + 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vocab_size ", options_.vocab_size, " cannot hold ", num_specials,
        " special tokens and the 256-byte alphabet"));
  }
  // Token strings in byte-level characters, indexed by id.
  std::vector<std::string> tokens(options_.special_tokens);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(ByteToUnicode(b), &s);
    tokens.push_back(std::move(s));
  }

  // Words in a deterministic order (the hash map's order is not).
  std::vector<std::pair<std::string, int64_t>> sorted(word_counts_.begin(),
                                                      word_counts_.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [text, count] : sorted) {
    Word w{{}, count};
    for (unsigned char c : text) w.symbols.push_back(num_specials + c);
    words.push_back(std::move(w));
  }

  absl::flat_hash_map<uint64_t, int64_t> pair_counts;
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int32_t>> where;
  auto count_word = [&](int32_t wi, int64_t sign) {
    const Word& w = words[wi];
    for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
      const uint64_t k = Key(w.symbols[i], w.symbols[i + 1]);
      pair_counts[k] += sign * w.count;
      if (sign > 0) where[k].insert(wi);
    }
  };
  for (int32_t wi = 0; wi < static_cast<int32_t>(words.size()); ++wi)
    count_word(wi, +1);

  std::priority_queue<Candidate> heap;
  for (const auto& [k, c] : pair_counts) heap.push({c, k});

  std::vector<std::pair<int32_t, int32_t>> merges;
  while (static_cast<int32_t>(tokens.size()) < options_.vocab_size &&
         !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    auto it = pair_counts.find(top.pair);
    const int64_t current = it == pair_counts.end() ? 0 : it->second;
    if (current != top.count) {  // stale entry: re-queue the live count
      if (current > 0) heap.push({current, top.pair});
      continue;
    }
    if (current < options_.min_frequency) break;
    const int32_t a = First(top.pair), b = Second(top.pair);
    const int32_t merged = static_cast<int32_t>(tokens.size());
    tokens.push_back(tokens[a] + tokens[b]);
    merges.emplace_back(a, b);

    const absl::flat_hash_set<int32_t> affected = std::move(where[top.pair]);
    where.erase(top.pair);
    std::vector<int32_t> order(affected.begin(), affected.end());
    std::sort(order.begin(), order.end());
    absl::flat_hash_set<uint64_t> touched;
    for (int32_t wi : order) {
      Word& w = words[wi];
      bool has = false;
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        if (w.symbols[i] == a && w.symbols[i + 1] == b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        touched.insert(Key(w.symbols[i], w.symbols[i + 1]));
      }
      count_word(wi, -1);
      std::vector<int32_t> out;
      out.reserve(w.symbols.size());
      for (size_t i = 0; i < w.symbols.size(); ++i) {
        if (i + 1 < w.symbols.size() && w.symbols[i] == a &&
            w.symbols[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(w.symbols[i]);
        }
      }
      w.symbols = std::move(out);
      count_word(wi, +1);
      for (size_t i = 0; i + 1 < w.symbols.size(); ++i) {
        touched.insert(Key(w.symbols[i], w.symbols[i + 1]));
      }
    }
    pair_counts.erase(top.pair);
    for (uint64_t k : touched) {
      auto pc = pair_counts.find(k);
      if (pc == pair_counts.end()) continue;
      if (pc->second <= 0) {
        pair_counts.erase(pc);
      } else {
        heap.push({pc->second, k});
      }
    }
  }

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const auto& [a, b] : merges)
    merge_list.push_back({tokens[a], tokens[b]});
  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  for (int32_t i = 0; i < num_specials; ++i) {
    added.push_back({{"id", i},
                     {"content", options_.special_tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  auto byte_level = [](bool prefix) {
    return nlohmann::ordered_json{{"type", "ByteLevel"},
                                  {"add_prefix_space", prefix},
                                  {"trim_offsets", true},
                                  {"use_regex", true}};
  };
  nlohmann::ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "NFC"}};
  j["pre_tokenizer"] = byte_level(false);
  j["post_processor"] = byte_level(false);
  j["decoder"] = byte_level(true);
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  return j.dump(1);
}

}  // namespace lft
