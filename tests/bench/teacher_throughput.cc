// Teacher extraction throughput: TeacherExtractionRunner end to end (read +
// tokenize + pack + teacher layers 0..n-1 + encode + embedded-store write)
// on random GPT-NeoX teachers and a synthetic corpus, on this machine's CPU.
// Prints one table row per teacher size.
//
//   teacher_throughput [--documents N] [--threads N] [--batch N]
//                      [--device cpu|cuda]  (cuda: bf16 compute)
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/corpus/jsonl_zst.h"
#include "common/corpus/shard_reader.h"
#include "common/corpus/synthetic_corpus.h"
#include "common/text/bpe_tokenizer.h"
#include "common/text/bpe_trainer.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/teacher/teacher_extraction_runner.h"

namespace {

namespace fs = std::filesystem;

class NullContext : public lft::TaskContext {
 public:
  bool ReportProgress(const lft::ProgressUpdate& u) override {
    last = u;
    return true;
  }
  const lft::CancellationToken& cancellation() const override { return token_; }
  absl::StatusOr<lft::RendezvousResult> Rendezvous(
      const std::string&) override {
    return absl::UnimplementedError("none");
  }
  lft::ProgressUpdate last;

 private:
  lft::CancellationToken token_;
};

struct Row {
  int64_t hidden, layers, heads, seq;
};

}  // namespace

int main(int argc, char** argv) {
  int64_t documents = 200, threads = 2, batch = 8;
  std::string device = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i];
    if (f == "--device") {
      device = argv[i + 1];
      continue;
    }
    int64_t v = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &v)) {
      std::fprintf(stderr, "bad value for %s\n", f.c_str());
      return 2;
    }
    if (f == "--documents")
      documents = v;
    else if (f == "--threads")
      threads = v;
    else if (f == "--batch")
      batch = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  torch::set_num_threads(static_cast<int>(threads));
  const fs::path root =
      fs::temp_directory_path() / absl::StrCat("lft-teacher-bench-", getpid());
  fs::create_directories(root);
  // Tokenizer (vocab 1024) and corpus shared by all rows.
  lft::BpeTrainerOptions to;
  to.vocab_size = 1024;
  lft::BpeTrainer trainer(to);
  for (int64_t i = 0; i < 200; ++i)
    trainer.AddText(lft::MakeSyntheticDocument(3, i).text);
  auto tok = trainer.TrainToJson();
  if (!tok.ok()) return 1;
  const std::string corpus = (root / "c.jsonl.zst").string();
  {
    auto w = lft::JsonlZstWriter::Open(corpus);
    if (!w.ok()) return 1;
    for (int64_t i = 0; i < documents; ++i)
      (void)(*w)->Write(lft::MakeSyntheticDocument(5, i).text, "Synthetic");
    if (!(*w)->Close().ok()) return 1;
  }
  {
    // Read + tokenize alone (the CPU share that is not the teacher).
    auto bpe = lft::BpeTokenizer::FromJson(*tok);
    if (!bpe.ok()) return 1;
    lft::ShardTask st;
    st.file = corpus;
    st.end_document = documents;
    auto reader = lft::ShardDocumentReader::Open(st, bpe->get());
    if (!reader.ok()) return 1;
    std::vector<int32_t> ids;
    int64_t index = 0, tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    while (true) {
      auto more = (*reader)->Next(&ids, &index);
      if (!more.ok() || !*more) break;
      tokens += static_cast<int64_t>(ids.size());
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    std::printf("read + tokenize only: %lld tokens in %.2f s = %.0f tokens/s\n",
                static_cast<long long>(tokens), secs,
                static_cast<double>(tokens) / secs);
  }
  std::printf(
      "device %s, threads %lld, batch %lld sequences, %lld documents, "
      "bf16 storage, embedded store\n",
      device.c_str(), static_cast<long long>(threads),
      static_cast<long long>(batch), static_cast<long long>(documents));
  std::printf(
      "| hidden | layers (n) | seq | pairs | tokens | seconds | "
      "tokens/s |\n|---|---|---|---|---|---|---|\n");
  const std::vector<Row> rows = {
      {32, 3, 4, 32}, {128, 6, 4, 256}, {512, 6, 8, 256}};
  int k = 0;
  for (const Row& r : rows) {
    const fs::path dir = root / absl::StrCat("teacher", k);
    fs::create_directories(dir);
    lft::NeoXConfig c;
    c.vocab_size = 1024;
    c.hidden_size = r.hidden;
    c.num_hidden_layers = r.layers;
    c.num_attention_heads = r.heads;
    c.intermediate_size = 4 * r.hidden;
    c.max_position_embeddings = 2048;
    c.rotary_pct = 0.25;
    std::ofstream(dir / "config.json") << lft::NeoXConfigToJson(c);
    std::ofstream(dir / "tokenizer.json") << *tok;
    if (!lft::SaveTensors(lft::GptNeoX::RandomTensors(c, 1),
                          (dir / "model.safetensors").string())
             .ok())
      return 1;
    lft::TeacherRunnerOptions o;
    o.store_db = (root / absl::StrCat("store", k)).string();
    o.batch_sequences = batch;
    o.device = device;
    lft::TeacherExtractionRunner runner(o);
    lft::v1::Task t;
    t.set_job_id("bench");
    t.mutable_spec()->mutable_teacher()->set_path(dir.string());
    t.mutable_spec()->mutable_block()->set_first_layer(1);
    t.mutable_spec()->mutable_block()->set_end_layer(
        static_cast<uint32_t>(r.layers));
    t.mutable_spec()->set_sequence_length(static_cast<uint32_t>(r.seq));
    t.mutable_spec()->set_storage_dtype(lft::v1::STORAGE_DTYPE_BF16);
    t.mutable_extraction()->set_corpus_path(corpus);
    t.mutable_extraction()->set_end_document(static_cast<uint64_t>(documents));
    NullContext ctx;
    // Warm-up load (the teacher is cached across tasks), then the timed run.
    t.mutable_extraction()->set_end_document(1);
    (void)runner.Run(t, &ctx);
    t.mutable_extraction()->set_end_document(static_cast<uint64_t>(documents));
    const auto start = std::chrono::steady_clock::now();
    auto res = runner.Run(t, &ctx);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    if (!res.ok()) {
      std::fprintf(stderr, "%s\n", res.status().ToString().c_str());
      return 1;
    }
    std::printf("| %lld | %lld | %lld | %llu | %llu | %.2f | %.0f |\n",
                static_cast<long long>(r.hidden),
                static_cast<long long>(r.layers), static_cast<long long>(r.seq),
                static_cast<unsigned long long>(res->pairs_written),
                static_cast<unsigned long long>(ctx.last.tokens_done), secs,
                static_cast<double>(ctx.last.tokens_done) / secs);
    ++k;
  }
  fs::remove_all(root);
  return 0;
}
