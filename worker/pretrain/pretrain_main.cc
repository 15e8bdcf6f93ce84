// lft-pretrain: trains a small GPT-NeoX teacher from scratch on a Pile-format
// corpus and writes an HF directory (config.json, model.safetensors,
// tokenizer.json). Trains a byte-level BPE tokenizer first unless one is
// given. Exit status: 0 success, 1 failure, 2 bad usage.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "common/corpus/jsonl_zst.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/bpe_trainer.h"
#include "worker/pretrain/teacher_pretrainer.h"

namespace {

// Flags are read once in main() (before any thread starts).
lft::Flags g_flags;

const std::vector<lft::FlagSpec>& PretrainFlags() {
  static const std::vector<lft::FlagSpec>* flags =
      new std::vector<lft::FlagSpec>{
          {"corpus", "PATH",
           "Corpus directory (train/*.jsonl.zst and val.jsonl.zst) or "
           "comma-separated training files"},
          {"heldout", "PATH",
           "Held-out file (default: <corpus>/val.jsonl.zst)"},
          {"out", "PATH", "Output HF directory"},
          {"tokenizer", "PATH", "Existing tokenizer.json (default: train one)"},
          {"vocab-size", "N",
           "Vocabulary of the trained tokenizer (default 4096)"},
          {"tokenizer-train-bytes", "N",
           "Text the tokenizer is trained on (default 20971520)"},
          {"layers", "N", "Transformer layers (default 8)"},
          {"hidden", "N", "Hidden size (default 128)"},
          {"heads", "N", "Attention heads (default 4)"},
          {"ffn", "N", "MLP width (default 4 x hidden)"},
          {"rotary-pct", "X",
           "Share of each head's dims with rotary embedding (default 0.25)"},
          {"seq", "N", "Training sequence length (default 128)"},
          {"max-positions", "N",
           "max_position_embeddings written to config.json (default 2048)"},
          {"batch", "N", "Sequences per step (default 16)"},
          {"steps", "N",
           "Optimizer steps (the LR schedule's length; default 1000)"},
          {"max-seconds", "X",
           "Guard: stop after this long even before --steps, with a warning "
           "(the teacher then depends on the machine's speed; 0 = no limit)"},
          {"lr", "X", "Peak learning rate (default 1e-3)"},
          {"warmup", "N", "Warm-up steps (default 50)"},
          {"max-train-tokens", "N",
           "Tokenize at most this many training tokens (0 = all)"},
          {"heldout-sequences", "N", "Held-out windows to score (default 64)"},
          {"eval-every", "N",
           "Score held-out every N steps (0 = only at the end)"},
          {"device", "S", "cpu or cuda[:N] (default cpu)"},
          {"threads", "N", "Intra-op threads (0 = LibTorch default)"},
          {"seed", "N", "Seed for initialisation and sampling (default 1)"},
          {"help", "", "print this text and exit"},
      };
  return *flags;
}

constexpr char kSynopsis[] =
    "lft-pretrain --corpus DIR --out TEACHER_DIR [--layers 8 --hidden 128 "
    "...]\n"
    "Pretrains a small GPT-NeoX teacher.";

// Integer and number flags were checked in main(); these cannot fail.
int64_t Int(const std::string& name, int64_t def) {
  return *g_flags.GetInt(name, def);
}
double Double(const std::string& name, double def) {
  return *g_flags.GetDouble(name, def);
}

}  // namespace

namespace {

std::vector<std::string> TrainFiles(const std::string& corpus) {
  std::vector<std::string> files;
  if (std::filesystem::is_directory(corpus)) {
    const std::string train = corpus + "/train";
    if (std::filesystem::is_directory(train)) {
      for (const auto& e : std::filesystem::directory_iterator(train)) {
        if (e.path().string().size() > 10 &&
            e.path().string().rfind(".jsonl.zst") ==
                e.path().string().size() - 10) {
          files.push_back(e.path().string());
        }
      }
    }
    std::sort(files.begin(), files.end());
    return files;
  }
  for (auto part : absl::StrSplit(corpus, ',', absl::SkipEmpty()))
    files.emplace_back(part);
  return files;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "lft-pretrain: %s\n", std::string(s.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<lft::Flags> parsed = lft::Flags::Parse(
      std::vector<std::string>(argv + 1, argv + argc), PretrainFlags());
  if (parsed.ok()) {
    for (const char* name :
         {"vocab-size", "tokenizer-train-bytes", "layers", "hidden", "heads",
          "ffn", "seq", "max-positions", "batch", "steps", "warmup",
          "max-train-tokens", "heldout-sequences", "eval-every", "threads",
          "seed"}) {
      if (!parsed->GetInt(name, 0).ok())
        parsed = parsed->GetInt(name, 0).status();
      if (!parsed.ok()) break;
    }
  }
  if (parsed.ok()) {
    for (const char* name : {"rotary-pct", "max-seconds", "lr"}) {
      if (!parsed->GetDouble(name, 0).ok())
        parsed = parsed->GetDouble(name, 0).status();
      if (!parsed.ok()) break;
    }
  }
  if (!parsed.ok()) {
    std::fprintf(stderr, "lft-pretrain: %s\n\n%s",
                 std::string(parsed.status().message()).c_str(),
                 lft::Flags::Usage(kSynopsis, PretrainFlags()).c_str());
    return 2;
  }
  if (parsed->Has("help")) {
    std::printf("%s", lft::Flags::Usage(kSynopsis, PretrainFlags()).c_str());
    return 0;
  }
  g_flags = *std::move(parsed);
  lft::SetLogComponent("pretrain");
  const std::string corpus = g_flags.Get("corpus", "");
  const std::string out = g_flags.Get("out", "");
  if (corpus.empty() || out.empty()) {
    std::fprintf(
        stderr, "lft-pretrain: --corpus and --out are required (see --help)\n");
    return 2;
  }
  const std::vector<std::string> train_files = TrainFiles(corpus);
  if (train_files.empty()) {
    std::fprintf(stderr, "lft-pretrain: no *.jsonl.zst training files in %s\n",
                 corpus.c_str());
    return 2;
  }
  std::string heldout = g_flags.Get("heldout", "");
  if (heldout.empty()) heldout = corpus + "/val.jsonl.zst";

  std::string tokenizer_json;
  if (!g_flags.Get("tokenizer", "").empty()) {
    std::ifstream in(g_flags.Get("tokenizer", ""));
    if (!in) {
      std::fprintf(stderr, "lft-pretrain: cannot read %s\n",
                   g_flags.Get("tokenizer", "").c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    tokenizer_json = ss.str();
  } else {
    lft::BpeTrainer trainer({static_cast<int32_t>(Int("vocab-size", 4096)), 2});
    int64_t bytes = 0;
    for (const std::string& file : train_files) {
      auto reader = lft::JsonlZstReader::Open(file);
      if (!reader.ok()) return Fail(reader.status());
      lft::JsonlDocument doc;
      while (bytes <
             static_cast<int64_t>(Int("tokenizer-train-bytes", 20 << 20))) {
        auto more = (*reader)->Next(&doc);
        if (!more.ok()) return Fail(more.status());
        if (!*more) break;
        trainer.AddText(doc.text);
        bytes += static_cast<int64_t>(doc.text.size());
      }
    }
    auto json = trainer.TrainToJson();
    if (!json.ok()) return Fail(json.status());
    tokenizer_json = *std::move(json);
    lft::LogInfo("trained tokenizer",
                 {{"bytes", bytes}, {"words", trainer.distinct_words()}});
  }
  auto tokenizer = lft::BpeTokenizer::FromJson(tokenizer_json);
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const auto eos = (*tokenizer)->TokenToId("<|endoftext|>");
  if (!eos.has_value()) {
    std::fprintf(stderr,
                 "lft-pretrain: the tokenizer has no <|endoftext|> token\n");
    return 1;
  }
  auto train =
      lft::TokenizeCorpus(train_files, **tokenizer, *eos,
                          static_cast<int64_t>(Int("max-train-tokens", 0)));
  if (!train.ok()) return Fail(train.status());
  auto held = lft::TokenizeCorpus(
      {heldout}, **tokenizer, *eos,
      (static_cast<int64_t>(Int("heldout-sequences", 64)) + 1) *
          (static_cast<int64_t>(Int("seq", 128)) + 1));
  if (!held.ok()) return Fail(held.status());
  lft::LogInfo("tokenized", {{"train_tokens", train->size()},
                             {"heldout_tokens", held->size()}});

  lft::PretrainOptions options;
  options.config.vocab_size = (*tokenizer)->vocab_size();
  options.config.hidden_size = static_cast<int64_t>(Int("hidden", 128));
  options.config.num_hidden_layers = static_cast<int64_t>(Int("layers", 8));
  options.config.num_attention_heads = static_cast<int64_t>(Int("heads", 4));
  options.config.intermediate_size =
      static_cast<int64_t>(Int("ffn", 0)) > 0
          ? static_cast<int64_t>(Int("ffn", 0))
          : 4 * static_cast<int64_t>(Int("hidden", 128));
  options.config.rotary_pct = Double("rotary-pct", 0.25);
  options.config.max_position_embeddings =
      static_cast<int64_t>(Int("max-positions", 2048));
  options.sequence_length = static_cast<int64_t>(Int("seq", 128));
  options.batch_sequences = static_cast<int64_t>(Int("batch", 16));
  options.max_steps = static_cast<int64_t>(Int("steps", 1000));
  options.max_seconds = Double("max-seconds", 0);
  options.learning_rate = Double("lr", 1e-3);
  options.warmup_steps = static_cast<int64_t>(Int("warmup", 50));
  options.heldout_sequences =
      static_cast<int64_t>(Int("heldout-sequences", 64));
  options.eval_every = static_cast<int64_t>(Int("eval-every", 0));
  options.device = g_flags.Get("device", "cpu");
  options.num_threads = static_cast<int32_t>(Int("threads", 0));
  options.seed = static_cast<uint64_t>(Int("seed", 1));
  auto report = lft::PretrainTeacher(
      *train, *held, options, tokenizer_json, out,
      [](const lft::PretrainProgress& p) {
        std::printf(
            "step %6lld  train loss %.4f%s  %.0f tok/s  %.0f s\n",
            static_cast<long long>(p.step), p.train_loss,
            p.heldout_loss >= 0
                ? absl::StrFormat("  held-out %.4f", p.heldout_loss).c_str()
                : "",
            p.tokens_per_second, p.seconds);
        std::fflush(stdout);
      });
  if (!report.ok()) return Fail(report.status());
  if (report->stopped_by_time_cap) {
    std::fprintf(stderr,
                 "\nlft-pretrain: WARNING: the --max-seconds guard of %.0f s "
                 "stopped training at step %lld of %lld: this teacher is "
                 "undertrained and differs from one trained to the end on "
                 "another machine\n",
                 options.max_seconds, static_cast<long long>(report->steps),
                 static_cast<long long>(options.max_steps));
  }
  std::printf(
      "\n| teacher | params | steps | tokens | seconds | tokens/s | held-out "
      "loss (nats) | "
      "held-out ppl | unigram entropy (nats) "
      "|\n|---|---|---|---|---|---|---|---|---|\n"
      "| %lldL x %lld | %lld | %lld | %lld | %.1f | %.0f | %.4f | %.2f | %.4f "
      "|\n",
      static_cast<long long>(options.config.num_hidden_layers),
      static_cast<long long>(options.config.hidden_size),
      static_cast<long long>(report->parameters),
      static_cast<long long>(report->steps),
      static_cast<long long>(report->tokens_trained), report->seconds,
      report->tokens_per_second, report->heldout_loss,
      report->heldout_perplexity, report->unigram_entropy);
  std::printf("wrote %s (config.json, model.safetensors, tokenizer.json)\n",
              out.c_str());
  return 0;
}
