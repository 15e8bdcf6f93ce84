// Extraction throughput at the scale users bring (issue 12): the teacher's
// forward alone, whole extraction tasks into the embedded store or into
// lft-store over gRPC, and a plain fsync'd file write as the disk ceiling.
// deploy/gpu/extraction_bench.sh runs every mode in one GPU call beside HF
// transformers' forward (tests/bench/hf_forward.py) and writes
// docs/benchmarks/extraction-h200.json.
//
//   extraction_throughput --mode make-teacher --teacher DIR
//       writes a random GPT-NeoX with Pythia-410M's shape (24 x 1024, 16
//       heads, vocab 50304, rotary 25%, parallel residual) and a BPE
//       tokenizer.json trained on --corpus, unless DIR/config.json exists.
//   extraction_throughput --mode forward --teacher DIR --batch B --seq S
//       layers 0..n-1 on random ids, hidden_states[m] and [n] kept on the
//       device; tokens/s over --iters forwards after 3 warm-ups.
//   extraction_throughput --mode extract --teacher DIR --corpus FILE
//       (--store-db DIR | --store HOST:PORT) [--codec bf16|fp8] [--tasks K]
//       K extraction tasks over FILE (shard indices 0..K-1, documents
//       [0, --documents)), one after another through TeacherExtractionRunner
//       with default options, as a worker runs them; prints tokens/s over
//       all tasks and over the first and last 10% of the tokens, and the
//       store directory's bytes over the payload bytes; --store-writers W
//       sets TeacherRunnerOptions::store_writers (PutPairs in flight),
//       --store-channels C RemotePairStoreOptions::data_channels,
//       --store-put-message-mib M its put_message_bytes.
//   extraction_throughput --mode disk --dir DIR --bytes N [--writers W]
//       W threads each write() N / W bytes into a file of their own in 8 MiB
//       chunks, then fdatasync: bytes/s until the last is synced.
// Every mode also prints one line "json {...}" with its figures.
#include <fcntl.h>
#include <sys/resource.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/corpus/jsonl_zst.h"
#include "common/tensor/tensor_codec.h"
#include "common/text/bpe_trainer.h"
#include "latent-store/pair_store_pool.h"
#include "latent-store/remote_pair_store.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/teacher/teacher_extraction_runner.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Args {
  std::string mode, teacher, corpus, store_db, store, dir, codec = "bf16",
                                                           device = "cuda";
  int64_t batch = 8, seq = 2048, first = 6, end = 18, iters = 20, tasks = 1,
          documents = 1000000, bytes = 4ll << 30, writers = 1,
          store_writers = 0,      // 0: TeacherRunnerOptions' default
      store_channels = 0,         // 0: RemotePairStoreOptions' default
      store_put_message_mib = 0;  // 0: RemotePairStoreOptions' default
};

// Records when progress arrived, to compare the rate at the start and end.
class RecordingContext : public lft::TaskContext {
 public:
  bool ReportProgress(const lft::ProgressUpdate& u) override {
    points.push_back({Since(start), base + u.tokens_done});
    last = u;
    return true;
  }
  const lft::CancellationToken& cancellation() const override { return token_; }
  absl::StatusOr<lft::RendezvousResult> Rendezvous(
      const std::string&) override {
    return absl::UnimplementedError("an extraction task does not rendezvous");
  }
  struct Point {
    double seconds;
    uint64_t tokens;
  };
  Clock::time_point start = Clock::now();
  uint64_t base = 0;  // tokens of earlier tasks
  std::vector<Point> points;
  lft::ProgressUpdate last;

 private:
  lft::CancellationToken token_;
};

// Tokens/s between the points where `from` and `to` of all tokens were done.
double RateBetween(const std::vector<RecordingContext::Point>& p, double from,
                   double to) {
  if (p.size() < 2) return 0;
  const double total = static_cast<double>(p.back().tokens);
  auto at = [&](double frac) {
    for (const auto& q : p)
      if (static_cast<double>(q.tokens) >= frac * total) return q;
    return p.back();
  };
  const auto a = at(from), b = at(to);
  if (b.seconds <= a.seconds) return 0;
  return static_cast<double>(b.tokens - a.tokens) / (b.seconds - a.seconds);
}

uint64_t DirectoryBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) total += e.file_size();
  }
  return total;
}

int MakeTeacher(const Args& a) {
  const fs::path dir = a.teacher;
  if (fs::exists(dir / "config.json")) {
    std::printf("teacher %s exists\n", a.teacher.c_str());
    return 0;
  }
  fs::create_directories(dir);
  lft::BpeTrainerOptions to;
  to.vocab_size = 4096;
  lft::BpeTrainer trainer(to);
  {
    auto r = lft::JsonlZstReader::Open(a.corpus);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    lft::JsonlDocument doc;
    for (int i = 0; i < 300; ++i) {
      auto more = (*r)->Next(&doc);
      if (!more.ok() || !*more) break;
      trainer.AddText(doc.text);
    }
  }
  auto tok = trainer.TrainToJson();
  if (!tok.ok()) return 1;
  lft::NeoXConfig c;  // Pythia-410M's shape
  c.vocab_size = 50304;
  c.hidden_size = 1024;
  c.num_hidden_layers = 24;
  c.num_attention_heads = 16;
  c.intermediate_size = 4096;
  c.max_position_embeddings = 2048;
  c.rotary_pct = 0.25;
  std::ofstream(dir / "config.json") << lft::NeoXConfigToJson(c);
  std::ofstream(dir / "tokenizer.json") << *tok;
  std::map<std::string, torch::Tensor> t = lft::GptNeoX::RandomTensors(c, 1);
  for (auto& [name, v] : t)
    v = v.to(torch::kBFloat16);  // as HF saves fp16/bf16
  absl::Status s = lft::SaveTensors(t, (dir / "model.safetensors").string());
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("wrote teacher %s\n", a.teacher.c_str());
  return 0;
}

int Forward(const Args& a) {
  torch::Device device(a.device);
  lft::NeoXLoadOptions lo;
  lo.device = device;
  lo.dtype = device.is_cuda() ? torch::kBFloat16 : torch::kFloat;
  auto model = lft::GptNeoX::Load(a.teacher, lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  torch::NoGradGuard no_grad;
  auto ids = torch::randint(0, (*model)->config().vocab_size, {a.batch, a.seq},
                            torch::TensorOptions().dtype(torch::kLong))
                 .to(device);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  for (int i = 0; i < 3; ++i) {
    auto r = (*model)->Extract(ids, a.first, a.end);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  sync();
  const auto start = Clock::now();
  for (int64_t i = 0; i < a.iters; ++i)
    (void)(*model)->Extract(ids, a.first, a.end);
  sync();
  const double secs = Since(start);
  const double tps = static_cast<double>(a.iters * a.batch * a.seq) / secs;
  // Where a layer's time goes: each stage alone on layer m's weights at
  // this shape, timed over --iters runs (GPU-synchronised), beside the
  // whole layer. FLOP/s for the matmul stages.
  if (device.is_cuda()) {
    const lft::GptNeoX& g = **model;
    const lft::NeoXLayerWeights& w = g.layer(a.first);
    const lft::NeoXLayerShape& sh = g.layer_shape();
    torch::Tensor x = torch::randn(
        {a.batch, a.seq, sh.hidden},
        torch::TensorOptions().dtype(torch::kBFloat16).device(device));
    torch::Tensor a4 =
        torch::randn({a.batch, a.seq, 4 * sh.hidden}, x.options());
    auto time_ms = [&](const std::function<void()>& f) {
      for (int i = 0; i < 2; ++i) f();
      sync();
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < a.iters; ++i) f();
      sync();
      return 1e3 * Since(t0) / static_cast<double>(a.iters);
    };
    const double tokens = static_cast<double>(a.batch * a.seq);
    const double h = static_cast<double>(sh.hidden);
    struct Stage {
      const char* name;
      double flops;
      std::function<void()> f;
    };
    std::vector<Stage> stages = {
        {"whole layer", 0, [&] { lft::NeoXLayer(w, sh, x, 0, nullptr); }},
        {"attention block (qkv, rotary, sdpa, dense)", 0,
         [&] { lft::NeoXAttention(w, sh, x, 0, nullptr); }},
        {"mlp block (fc1, gelu, fc2)", 2 * tokens * h * 8 * h,
         [&] { lft::NeoXMlp(w, x); }},
        {"qkv matmul", 2 * tokens * h * 3 * h,
         [&] { torch::nn::functional::linear(x, w.qkv_w, w.qkv_b); }},
        {"fc1 matmul", 2 * tokens * h * 4 * h,
         [&] { torch::nn::functional::linear(x, w.fc1_w, w.fc1_b); }},
        {"gelu", 0, [&] { torch::gelu(a4); }},
        {"layer norm", 0,
         [&] { torch::layer_norm(x, {sh.hidden}, w.ln1_w, w.ln1_b, sh.eps); }},
        {"add", 0, [&] { (void)(x + x); }},
    };
    std::printf(
        "| stage (layer %lld, %lld x %lld) | ms | TFLOP/s |\n"
        "|---|---|---|\n",
        static_cast<long long>(a.first), static_cast<long long>(a.batch),
        static_cast<long long>(a.seq));
    for (const Stage& st : stages) {
      const double ms = time_ms(st.f);
      if (st.flops > 0) {
        std::printf("| %s | %.3f | %.0f |\n", st.name, ms, st.flops / ms / 1e9);
      } else {
        std::printf("| %s | %.3f | - |\n", st.name, ms);
      }
    }
  }
  std::printf("| lft forward [0, %lld) | %lld x %lld | %.0f tokens/s |\n",
              static_cast<long long>(a.end), static_cast<long long>(a.batch),
              static_cast<long long>(a.seq), tps);
  std::printf(
      "json {\"mode\": \"forward\", \"batch\": %lld, \"seq\": %lld, "
      "\"tokens_per_second\": %.1f}\n",
      static_cast<long long>(a.batch), static_cast<long long>(a.seq), tps);
  return 0;
}

// User + system CPU seconds of this process so far (all threads): beside
// the wall time it says how many cores the worker side kept busy.
double ProcessCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// "embedded", "grpc", or "grpcN" for a job spread over N lft-store processes.
std::string StoreKind(const Args& a) {
  if (a.store.empty()) return "embedded";
  const auto n = std::count(a.store.begin(), a.store.end(), ',');
  return n == 0 ? "grpc" : absl::StrCat("grpc", n + 1);
}

int Extract(const Args& a) {
  lft::TeacherRunnerOptions o;
  o.device = a.device;
  o.store_db = a.store_db;
  o.batch_sequences = a.batch;
  if (a.store_writers > 0) o.store_writers = a.store_writers;
  lft::RemotePairStoreOptions remote;
  if (a.store_channels > 0) {
    remote.data_channels = static_cast<uint32_t>(a.store_channels);
  }
  if (a.store_put_message_mib > 0) {
    remote.put_message_bytes = static_cast<uint64_t>(a.store_put_message_mib)
                               << 20;
  }
  lft::PairStorePool pool(a.store_db, remote);
  o.stores = &pool;
  lft::TeacherExtractionRunner runner(o);
  lft::v1::Task t;
  t.set_job_id("bench");
  t.set_store_address(a.store);
  lft::v1::JobSpec* spec = t.mutable_spec();
  spec->mutable_teacher()->set_path(a.teacher);
  spec->mutable_block()->set_first_layer(static_cast<uint32_t>(a.first));
  spec->mutable_block()->set_end_layer(static_cast<uint32_t>(a.end));
  spec->set_sequence_length(static_cast<uint32_t>(a.seq));
  spec->set_storage_dtype(a.codec == "fp8" ? lft::v1::STORAGE_DTYPE_FP8_E4M3
                                           : lft::v1::STORAGE_DTYPE_BF16);
  t.mutable_extraction()->set_corpus_path(a.corpus);
  // Warm-up: loads the teacher (kept by the runner) on a tiny task of its
  // own job, so the timed job's pairs are only the timed ones.
  {
    lft::v1::Task w = t;
    w.set_job_id("warmup");
    w.mutable_extraction()->set_shard_index(0);
    w.mutable_extraction()->set_end_document(20);
    RecordingContext ctx;
    auto r = runner.Run(w, &ctx);
    if (!r.ok()) {
      std::fprintf(stderr, "warm-up: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  RecordingContext ctx;
  const double cpu_start = ProcessCpuSeconds();
  uint64_t pairs = 0;
  for (int64_t k = 0; k < a.tasks; ++k) {
    t.set_task_id(absl::StrCat("extract-", k));
    t.mutable_extraction()->set_shard_index(static_cast<uint32_t>(k + 1));
    t.mutable_extraction()->set_end_document(
        static_cast<uint64_t>(a.documents));
    auto r = runner.Run(t, &ctx);
    if (!r.ok()) {
      std::fprintf(stderr, "task %lld: %s\n", static_cast<long long>(k),
                   r.status().ToString().c_str());
      return 1;
    }
    pairs += r->pairs_written;
    ctx.base += ctx.last.tokens_done;
  }
  const double secs = Since(ctx.start);
  const double cpu = ProcessCpuSeconds() - cpu_start;
  const uint64_t tokens = ctx.base;
  const size_t hidden = 1024;
  const lft::TensorCodec codec =
      a.codec == "fp8" ? lft::TensorCodec::kFp8E4M3 : lft::TensorCodec::kBF16;
  const double payload_per_token =
      2.0 * static_cast<double>(lft::EncodedBytes(codec, 1, hidden));
  const double payload = payload_per_token * static_cast<double>(tokens);
  // Only an embedded store's directory is this process's to measure; the
  // GPU script reports lft-store's directory itself.
  std::string footprint = "-", footprint_json = "null";
  if (!a.store_db.empty()) {
    const double ratio =
        static_cast<double>(DirectoryBytes(a.store_db)) / payload;
    footprint = absl::StrFormat("%.3f", ratio);
    footprint_json = absl::StrFormat("%.4f", ratio);
  }
  const double tps = static_cast<double>(tokens) / secs;
  const double first = RateBetween(ctx.points, 0.0, 0.1);
  const double last = RateBetween(ctx.points, 0.9, 1.0);
  std::printf(
      "| extract %s %s | %llu pairs, %llu tokens, %.1f GB payload | %.1f s | "
      "%.0f tokens/s (first 10%%: %.0f, last 10%%: %.0f) | footprint %s |\n",
      StoreKind(a).c_str(), a.codec.c_str(),
      static_cast<unsigned long long>(pairs),
      static_cast<unsigned long long>(tokens), payload / 1e9, secs, tps, first,
      last, footprint.c_str());
  std::printf(
      "json {\"mode\": \"extract\", \"store\": \"%s\", \"codec\": \"%s\", "
      "\"batch\": %lld, \"seq\": %lld, \"tokens\": %llu, \"seconds\": %.3f, "
      "\"tokens_per_second\": %.1f, \"first_tokens_per_second\": %.1f, "
      "\"last_tokens_per_second\": %.1f, \"payload_bytes_per_token\": %.1f, "
      "\"disk_footprint_ratio\": %s, \"store_writers\": %lld, "
      "\"store_channels\": %lld, \"store_put_message_bytes\": %llu, "
      "\"worker_cpu_seconds\": %.2f}\n",
      StoreKind(a).c_str(), a.codec.c_str(), static_cast<long long>(a.batch),
      static_cast<long long>(a.seq), static_cast<unsigned long long>(tokens),
      secs, tps, first, last, payload_per_token, footprint_json.c_str(),
      static_cast<long long>(a.store_writers > 0
                                 ? a.store_writers
                                 : lft::TeacherRunnerOptions().store_writers),
      static_cast<long long>(remote.data_channels),
      static_cast<unsigned long long>(remote.put_message_bytes), cpu);
  return 0;
}

// One writer's share of the disk ceiling: `bytes` into its own file in 8 MiB
// write() calls, then fdatasync. Returns false after printing the error.
bool WriteAndSync(const std::string& path, int64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    return false;
  }
  std::vector<char> chunk(8 << 20);
  for (size_t i = 0; i < chunk.size(); ++i)
    chunk[i] = static_cast<char>(i * 131);
  int64_t left = bytes;
  bool ok = true;
  while (ok && left > 0) {
    const size_t n = static_cast<size_t>(std::min<int64_t>(left, chunk.size()));
    ok = ::write(fd, chunk.data(), n) == static_cast<ssize_t>(n);
    if (!ok) std::perror("write");
    left -= static_cast<int64_t>(n);
  }
  if (ok && ::fdatasync(fd) != 0) {
    std::perror("fdatasync");
    ok = false;
  }
  ::close(fd);
  return ok;
}

// The store writes several files at once (blob files, SSTs, the WAL), so
// the ceiling is taken with --writers parallel writers as well as one: a
// single sequential writer understated what this disk takes (the embedded
// store once wrote faster than it).
int Disk(const Args& a) {
  fs::create_directories(a.dir);
  const int64_t writers = std::max<int64_t>(1, a.writers);
  const int64_t share = a.bytes / writers;
  std::vector<std::string> paths;
  for (int64_t i = 0; i < writers; ++i) {
    paths.push_back(
        (fs::path(a.dir) / absl::StrCat("ceiling-", i, ".bin")).string());
  }
  std::vector<char> ok(static_cast<size_t>(writers), 0);
  const auto start = Clock::now();
  {
    std::vector<std::thread> threads;
    for (int64_t i = 0; i < writers; ++i) {
      threads.emplace_back([&, i] {
        ok[static_cast<size_t>(i)] = WriteAndSync(paths[i], share) ? 1 : 0;
      });
    }
    for (std::thread& t : threads) t.join();
  }
  const double secs = Since(start);
  for (const std::string& p : paths) fs::remove(p);
  if (std::find(ok.begin(), ok.end(), 0) != ok.end()) return 1;
  const double total = static_cast<double>(share * writers);
  const double bps = total / secs;
  std::printf(
      "| plain write + fdatasync, %lld writer(s) | %.1f GB | %.2f s | %.2f "
      "GB/s |\n",
      static_cast<long long>(writers), total / 1e9, secs, bps / 1e9);
  std::printf(
      "json {\"mode\": \"disk\", \"writers\": %lld, \"bytes\": %.0f, "
      "\"bytes_per_second\": %.1f}\n",
      static_cast<long long>(writers), total, bps);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    std::map<std::string, std::string*> strings = {
        {"--mode", &a.mode},     {"--teacher", &a.teacher},
        {"--corpus", &a.corpus}, {"--store-db", &a.store_db},
        {"--store", &a.store},   {"--dir", &a.dir},
        {"--codec", &a.codec},   {"--device", &a.device}};
    std::map<std::string, int64_t*> ints = {
        {"--batch", &a.batch},
        {"--seq", &a.seq},
        {"--first", &a.first},
        {"--end", &a.end},
        {"--iters", &a.iters},
        {"--tasks", &a.tasks},
        {"--documents", &a.documents},
        {"--bytes", &a.bytes},
        {"--writers", &a.writers},
        {"--store-writers", &a.store_writers},
        {"--store-channels", &a.store_channels},
        {"--store-put-message-mib", &a.store_put_message_mib}};
    if (auto it = strings.find(f); it != strings.end()) {
      *it->second = v;
    } else if (auto jt = ints.find(f); jt != ints.end()) {
      if (!absl::SimpleAtoi(v, jt->second)) {
        std::fprintf(stderr, "bad value for %s: %s\n", f.c_str(), v.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", f.c_str());
      return 2;
    }
  }
  if (a.mode == "make-teacher") return MakeTeacher(a);
  if (a.mode == "forward") return Forward(a);
  if (a.mode == "extract") return Extract(a);
  if (a.mode == "disk") return Disk(a);
  std::fprintf(stderr,
               "usage: extraction_throughput --mode "
               "make-teacher|forward|extract|disk ... (see the header)\n");
  return 2;
}
