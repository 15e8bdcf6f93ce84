// corpus_throughput: reader + tokenizer throughput on one *.jsonl.zst file,
// against `zstd -dc FILE > /dev/null` (the physical ceiling for reading it).
//
//   corpus_throughput [--file F.jsonl.zst] [--tokenizer tokenizer.json]
//                     [--threads N]
//
// Without --file it writes a synthetic corpus (~10 MB of text, one train
// shard) to a temporary directory and measures its train file. Without
// --tokenizer it uses tests/fixtures/tokenizer/tokenizer.json. Prints a
// table: seconds, MB/s of decompressed text, documents/s, tokens/s, and the
// ratio of each row's throughput to `zstd -dc`.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/jsonl_zst.h"
#include "common/corpus/synthetic_corpus.h"
#include "common/text/bpe_tokenizer.h"

namespace {

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void Die(const std::string& msg) {
  std::fprintf(stderr, "corpus_throughput: %s\n", msg.c_str());
  std::exit(1);
}

struct Row {
  std::string name;
  double seconds = 0;
  double bytes = 0;  // decompressed bytes processed
  double docs = 0;
  double tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string file, tokenizer_path = std::string(LFT_SOURCE_DIR) +
                                     "/tests/fixtures/tokenizer/tokenizer.json";
  int threads = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--file") {
      file = value;
    } else if (flag == "--tokenizer") {
      tokenizer_path = value;
    } else if (flag == "--threads") {
      if (!absl::SimpleAtoi(value, &threads) || threads < 1)
        Die("bad --threads");
    } else {
      Die("unknown flag " + flag);
    }
  }
  std::string temp_dir;
  if (file.empty()) {
    temp_dir = absl::StrCat("/tmp/lft_corpus_throughput_", getpid());
    lft::SyntheticCorpusOptions o;
    o.seed = 1;
    o.documents = 8000;
    o.train_shards = 1;
    double t0 = Now();
    auto stats = lft::WriteSyntheticCorpus(temp_dir, o);
    if (!stats.ok()) Die(stats.status().ToString());
    std::printf(
        "generated synthetic corpus: %lld documents, %.1f MB text in %.2f s\n",
        static_cast<long long>(stats->documents), stats->text_bytes / 1e6,
        Now() - t0);
    file = temp_dir + "/train/00.jsonl.zst";
  }
  auto tok = lft::BpeTokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) Die(tok.status().ToString());
  std::printf("file: %s (%lld bytes compressed)\ntokenizer: %s (vocab %d)\n\n",
              file.c_str(),
              static_cast<long long>(std::filesystem::file_size(file)),
              tokenizer_path.c_str(), (*tok)->vocab_size());

  std::vector<Row> rows;
  // 1. zstd -dc: the ceiling. Best of 3.
  double decompressed = 0;
  {
    Row r{"zstd -dc FILE > /dev/null"};
    r.seconds = 1e30;
    for (int k = 0; k < 3; ++k) {
      double t0 = Now();
      std::string cmd = "zstd -qdc '" + file + "' > /dev/null";
      if (std::system(cmd.c_str()) != 0) Die("zstd -dc failed");
      r.seconds = std::min(r.seconds, Now() - t0);
    }
    rows.push_back(r);
  }
  // 2. Reader only: decompress + split lines + parse JSON.
  std::vector<std::string> texts;
  {
    Row r{"JsonlZstReader (decompress + JSON)"};
    r.seconds = 1e30;
    for (int k = 0; k < 3; ++k) {
      texts.clear();
      double t0 = Now();
      auto reader = lft::JsonlZstReader::Open(file);
      if (!reader.ok()) Die(reader.status().ToString());
      lft::JsonlDocument doc;
      double docs = 0;
      while (true) {
        auto got = (*reader)->Next(&doc);
        if (!got.ok()) Die(got.status().ToString());
        if (!*got) break;
        ++docs;
        texts.push_back(std::move(doc.text));
      }
      r.seconds = std::min(r.seconds, Now() - t0);
      r.docs = docs;
      decompressed = static_cast<double>((*reader)->decompressed_bytes());
    }
    rows.push_back(r);
  }
  for (Row& r : rows) r.bytes = decompressed;
  double text_bytes = 0;
  for (const auto& t : texts) text_bytes += static_cast<double>(t.size());
  // 3. Tokenizer only on texts in memory, a fresh (cold-cache) tokenizer.
  {
    Row r{"BpeTokenizer::Encode, cold cache"};
    auto t = (*tok)->Clone();
    std::vector<int32_t> ids;
    double t0 = Now();
    for (const auto& text : texts) {
      ids.clear();
      t->Encode(text, &ids);
      r.tokens += static_cast<double>(ids.size());
    }
    r.seconds = Now() - t0;
    r.bytes = text_bytes;
    r.docs = static_cast<double>(texts.size());
    rows.push_back(r);
  }
  // 4. Reader + tokenizer end to end, `threads` tokenizer threads.
  {
    Row r{absl::StrCat("reader + tokenizer, ", threads, " thread(s)")};
    r.seconds = 1e30;
    for (int k = 0; k < 2; ++k) {
      double t0 = Now();
      auto reader = lft::JsonlZstReader::Open(file);
      if (!reader.ok()) Die(reader.status().ToString());
      std::atomic<double> tokens{0};
      if (threads == 1) {
        auto t = (*tok)->Clone();
        lft::JsonlDocument doc;
        std::vector<int32_t> ids;
        double n = 0;
        while (true) {
          auto got = (*reader)->Next(&doc);
          if (!got.ok()) Die(got.status().ToString());
          if (!*got) break;
          ids.clear();
          t->Encode(doc.text, &ids);
          n += static_cast<double>(ids.size());
        }
        tokens = n;
      } else {
        // One reader thread feeding batches round-robin to tokenizer threads.
        std::vector<std::vector<std::string>> parts(threads);
        lft::JsonlDocument doc;
        size_t i = 0;
        while (true) {
          auto got = (*reader)->Next(&doc);
          if (!got.ok()) Die(got.status().ToString());
          if (!*got) break;
          parts[i++ % threads].push_back(std::move(doc.text));
        }
        std::vector<std::thread> pool;
        for (int w = 0; w < threads; ++w) {
          pool.emplace_back([&, w] {
            auto t = (*tok)->Clone();
            std::vector<int32_t> ids;
            double n = 0;
            for (const auto& text : parts[w]) {
              ids.clear();
              t->Encode(text, &ids);
              n += static_cast<double>(ids.size());
            }
            double cur = tokens.load();
            while (!tokens.compare_exchange_weak(cur, cur + n)) {
            }
          });
        }
        for (auto& th : pool) th.join();
      }
      r.seconds = std::min(r.seconds, Now() - t0);
      r.tokens = tokens.load();
    }
    r.bytes = decompressed;
    r.docs = static_cast<double>(texts.size());
    rows.push_back(r);
  }
  const double ceiling = rows[0].bytes / rows[0].seconds;
  std::printf("| stage | seconds | MB/s | docs/s | tokens/s | vs zstd -dc |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    double mbps = r.bytes / r.seconds / 1e6;
    std::printf(
        "| %s | %.3f | %.1f | %s | %s | %.3f |\n", r.name.c_str(), r.seconds,
        mbps,
        r.docs > 0
            ? absl::StrCat(static_cast<long long>(r.docs / r.seconds)).c_str()
            : "-",
        r.tokens > 0
            ? absl::StrCat(static_cast<long long>(r.tokens / r.seconds)).c_str()
            : "-",
        (r.bytes / r.seconds) / ceiling);
  }
  std::printf(
      "\ndecompressed bytes %.0f, text bytes %.0f, tokens %.0f (%.2f "
      "bytes/token)\n",
      decompressed, text_bytes, rows.back().tokens,
      text_bytes / std::max(1.0, rows.back().tokens));
  if (!temp_dir.empty()) std::filesystem::remove_all(temp_dir);
  return 0;
}
