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

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/bpe_tokenizer.h"
#include "common/bpe_trainer.h"
#include "common/jsonl_zst.h"
#include "common/log.h"
#include "worker/pretrain/teacher_pretrainer.h"

ABSL_FLAG(
    std::string, corpus, "",
    "Corpus directory (train/*.jsonl.zst and val.jsonl.zst) or comma-separated "
    "training files");
ABSL_FLAG(std::string, heldout, "",
          "Held-out file (default: <corpus>/val.jsonl.zst)");
ABSL_FLAG(std::string, out, "", "Output HF directory");
ABSL_FLAG(std::string, tokenizer, "",
          "Existing tokenizer.json (default: train one)");
ABSL_FLAG(int32_t, vocab_size, 4096, "Vocabulary of the trained tokenizer");
ABSL_FLAG(int64_t, tokenizer_train_bytes, 20 << 20,
          "Text the tokenizer is trained on");
ABSL_FLAG(int64_t, layers, 8, "Transformer layers");
ABSL_FLAG(int64_t, hidden, 128, "Hidden size");
ABSL_FLAG(int64_t, heads, 4, "Attention heads");
ABSL_FLAG(int64_t, ffn, 0, "MLP width (default 4 x hidden)");
ABSL_FLAG(double, rotary_pct, 0.25,
          "Share of each head's dims with rotary embedding");
ABSL_FLAG(int64_t, seq, 128, "Training sequence length");
ABSL_FLAG(int64_t, max_positions, 2048,
          "max_position_embeddings written to config.json");
ABSL_FLAG(int64_t, batch, 16, "Sequences per step");
ABSL_FLAG(int64_t, steps, 1000, "Optimizer steps (the LR schedule's length)");
ABSL_FLAG(double, max_seconds, 0, "Stop after this long (0 = no limit)");
ABSL_FLAG(double, lr, 1e-3, "Peak learning rate");
ABSL_FLAG(int64_t, warmup, 50, "Warm-up steps");
ABSL_FLAG(int64_t, max_train_tokens, 0,
          "Tokenize at most this many training tokens (0 = all)");
ABSL_FLAG(int64_t, heldout_sequences, 64, "Held-out windows to score");
ABSL_FLAG(int64_t, eval_every, 0,
          "Score held-out every N steps (0 = only at the end)");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda[:N]");
ABSL_FLAG(int32_t, threads, 0, "Intra-op threads (0 = LibTorch default)");
ABSL_FLAG(uint64_t, seed, 1, "Seed for initialisation and sampling");

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
  absl::SetProgramUsageMessage(
      "Pretrains a small GPT-NeoX teacher.\n"
      "  lft-pretrain --corpus DIR --out TEACHER_DIR [--layers 8 --hidden 128 "
      "...]");
  absl::ParseCommandLine(argc, argv);
  lft::SetLogComponent("pretrain");
  const std::string corpus = absl::GetFlag(FLAGS_corpus);
  const std::string out = absl::GetFlag(FLAGS_out);
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
  std::string heldout = absl::GetFlag(FLAGS_heldout);
  if (heldout.empty()) heldout = corpus + "/val.jsonl.zst";

  std::string tokenizer_json;
  if (!absl::GetFlag(FLAGS_tokenizer).empty()) {
    std::ifstream in(absl::GetFlag(FLAGS_tokenizer));
    if (!in) {
      std::fprintf(stderr, "lft-pretrain: cannot read %s\n",
                   absl::GetFlag(FLAGS_tokenizer).c_str());
      return 1;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    tokenizer_json = ss.str();
  } else {
    lft::BpeTrainer trainer({absl::GetFlag(FLAGS_vocab_size), 2});
    int64_t bytes = 0;
    for (const std::string& file : train_files) {
      auto reader = lft::JsonlZstReader::Open(file);
      if (!reader.ok()) return Fail(reader.status());
      lft::JsonlDocument doc;
      while (bytes < absl::GetFlag(FLAGS_tokenizer_train_bytes)) {
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
  auto train = lft::TokenizeCorpus(train_files, **tokenizer, *eos,
                                   absl::GetFlag(FLAGS_max_train_tokens));
  if (!train.ok()) return Fail(train.status());
  auto held = lft::TokenizeCorpus({heldout}, **tokenizer, *eos,
                                  (absl::GetFlag(FLAGS_heldout_sequences) + 1) *
                                      (absl::GetFlag(FLAGS_seq) + 1));
  if (!held.ok()) return Fail(held.status());
  lft::LogInfo("tokenized", {{"train_tokens", train->size()},
                             {"heldout_tokens", held->size()}});

  lft::PretrainOptions options;
  options.config.vocab_size = (*tokenizer)->vocab_size();
  options.config.hidden_size = absl::GetFlag(FLAGS_hidden);
  options.config.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  options.config.num_attention_heads = absl::GetFlag(FLAGS_heads);
  options.config.intermediate_size = absl::GetFlag(FLAGS_ffn) > 0
                                         ? absl::GetFlag(FLAGS_ffn)
                                         : 4 * absl::GetFlag(FLAGS_hidden);
  options.config.rotary_pct = absl::GetFlag(FLAGS_rotary_pct);
  options.config.max_position_embeddings = absl::GetFlag(FLAGS_max_positions);
  options.sequence_length = absl::GetFlag(FLAGS_seq);
  options.batch_sequences = absl::GetFlag(FLAGS_batch);
  options.max_steps = absl::GetFlag(FLAGS_steps);
  options.max_seconds = absl::GetFlag(FLAGS_max_seconds);
  options.learning_rate = absl::GetFlag(FLAGS_lr);
  options.warmup_steps = absl::GetFlag(FLAGS_warmup);
  options.heldout_sequences = absl::GetFlag(FLAGS_heldout_sequences);
  options.eval_every = absl::GetFlag(FLAGS_eval_every);
  options.device = absl::GetFlag(FLAGS_device);
  options.num_threads = absl::GetFlag(FLAGS_threads);
  options.seed = absl::GetFlag(FLAGS_seed);
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
