// Trainer step time: one step of the latent flow layer (FW k = 3 midpoint by
// default; --method sfm|regression) on a random GPT-NeoX-shaped teacher
// layer, for 1 and 2 data-parallel ranks
// (in-process threads, Gloo on CPU / one rank on CUDA), reading random pairs
// from an embedded store. Step time = (time rank 0 reports step S + 2 -
// time it reports step 3) / (S - 1) within one run of S + 3 steps (every step
// ends with the loss on the host, so a report follows its step's GPU work):
// loading, group forming, the first steps' one-time costs (a CUDA graph is
// recorded on the second) and the last step (it writes the final checkpoint)
// stay outside (after one discarded warm-up run). Prints a table; never
// pass/fail. On CPU run it with OPENBLAS_NUM_THREADS=1: the in-process
// ranks call BLAS concurrently, and OpenBLAS' own thread pool serialises
// them (measured: 2 ranks 0.46x of 1 rank with it, 1.48x without).
//
//   trainer_throughput [--device cpu|cuda] [--hidden 128] [--seq 128]
//                      [--batch 16] [--steps 20] [--ranks 1,2]
//                      [--method fw|sfm|regression] [--peak-tflops P]
//                      [--profile trace.json] [--store-address HOST:PORT]
//                      [--scaling strong|weak] [--store-scan-streams N]
// --scaling weak makes --batch each rank's (W ranks: W x --batch per step)
// and puts rank r on cuda:r with --device cuda: the multi-GPU scaling rows
// (deploy/gpu/multigpu_bench.sh); "efficiency" is tokens/s per rank over
// the first row's.
// --store-address reads (and first writes) the pairs through a running
// lft-store over gRPC instead of an embedded store, as a job's trainer does;
// the input-wait column is lft_trainer_input_wait_seconds_total over the
// same steps divided by their wall time (reads that stall the step), the
// read-ahead column lft_trainer_input_prefetch_seconds_total (reads of the
// next step's pairs while the GPU runs this one). --store-scan-streams
// sets RemotePairStoreOptions::scan_streams (its default otherwise), and
// LFT_GRPC_STREAM_WINDOW_MIB the HTTP/2 window (common/rpc/channel.h).
// --profile (LibTorch 2 only) records one more run of S + 3 steps of the
// first rank count with the Kineto profiler and writes its Chrome trace;
// deploy/gpu/kernel_profile.py turns it into a per-step kernel table.
// MFU = model FLOPs per step (worker/model/flow_flops.h) / step time / peak;
// on CUDA the peak is measured in the same run (bf16 8192^3 matmuls) unless
// --peak-tflops is given. Every row is also printed as "json {...}".
#include <torch/torch.h>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/prometheus_metrics.h"
#include "common/base/teacher_config.h"
#include "common/rpc/channel.h"
#include "common/tensor/tensor_codec.h"
#include "latent-store/pair_store_pool.h"
#include "tests/unit/worker/trainer/in_process_group.h"
#include "worker/kernels/fused_ops.h"
#include "worker/model/flow_flops.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/trainer/engine/flow_training_engine.h"
#include "worker/trainer/trainer_runner.h"

namespace fs = std::filesystem;

namespace {

struct Config {
  std::string device = "cpu";
  std::string method = "fw";
  std::string profile;        // Chrome trace path; empty = no profiled run
  std::string store_address;  // empty = embedded store
  // RemotePairStoreOptions::scan_streams; 0 = its default.
  uint32_t store_scan_streams = 0;
  double peak_tflops = 0;
  int hidden = 128, seq = 128, batch = 16, steps = 20;
  std::vector<int> ranks = {1, 2};
  // "strong": --batch is the global batch at every rank count; "weak": it
  // is each rank's, so W ranks step over W x --batch sequences (the
  // multi-GPU scaling rows: efficiency = tokens/s(W) / (W x tokens/s(1))).
  std::string scaling = "strong";
};

int GlobalBatch(const Config& c, int world) {
  return c.scaling == "weak" ? c.batch * world : c.batch;
}

// With --device cuda and several ranks, rank r runs on cuda:r (one GPU per
// rank, as NCCL requires); an explicit cuda:N or cpu is used by every rank.
std::string RankDevice(const Config& c, int world, int rank) {
  if (c.device == "cuda" && world > 1) return absl::StrCat("cuda:", rank);
  return c.device;
}

// Records CPU ops of the calling thread and every CUDA kernel while alive,
// then saves the Chrome trace.
class KernelProfile {
 public:
  explicit KernelProfile(std::string path) : path_(std::move(path)) {
#if TORCH_VERSION_MAJOR >= 2
    if (path_.empty()) return;
    namespace tpi = torch::profiler::impl;
    tpi::ProfilerConfig cfg(tpi::ProfilerState::KINETO);
    const std::set<tpi::ActivityType> acts = {tpi::ActivityType::CPU,
                                              tpi::ActivityType::CUDA};
    torch::autograd::profiler::prepareProfiler(cfg, acts);
    torch::autograd::profiler::enableProfiler(cfg, acts);
#else
    if (!path_.empty())
      std::fprintf(stderr, "--profile needs LibTorch 2; not recorded\n");
    path_.clear();
#endif
  }
  ~KernelProfile() {
#if TORCH_VERSION_MAJOR >= 2
    if (path_.empty()) return;
    torch::autograd::profiler::disableProfiler()->save(path_);
    std::fprintf(stderr, "profile written to %s\n", path_.c_str());
#endif
  }

 private:
  std::string path_;
};

// Remembers when each step was reported.
// and the input wait counter's value then.
class TimedRankContext : public lft::InProcessRankContext {
 public:
  TimedRankContext(lft::FakeRendezvous* rv, uint32_t rank,
                   prometheus::Counter* input_wait,
                   prometheus::Counter* prefetch)
      : InProcessRankContext(rv, rank),
        input_wait_(input_wait),
        prefetch_(prefetch) {}
  bool ReportProgress(const lft::ProgressUpdate& update) override {
    times[update.steps_done] = std::chrono::steady_clock::now();
    waits[update.steps_done] = input_wait_->Value();
    prefetches[update.steps_done] = prefetch_->Value();
    return InProcessRankContext::ReportProgress(update);
  }
  std::map<uint64_t, std::chrono::steady_clock::time_point> times;
  std::map<uint64_t, double> waits, prefetches;

 private:
  prometheus::Counter* input_wait_;
  prometheus::Counter* prefetch_;
};

struct StepTiming {
  double seconds = -1;    // per step
  double input_wait = 0;  // fraction of step time
  double prefetch = 0;    // fraction of step time reading ahead (overlapped)
  double fastest = 0, median = 0, slowest = 0;  // single steps
};

constexpr int kSkipSteps = 3;

// Timing of steps (kSkipSteps, steps - 1] of one run; seconds -1 on error.
StepTiming RunSteps(const Config& c, lft::PairStorePool* pool,
                    const std::string& teacher, const std::string& job,
                    int world, int steps, const std::string& profile = "") {
  lft::FakeRendezvous rv(world);
  StepTiming timing;
  std::vector<std::thread> threads;
  bool ok = true;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r]() {
      KernelProfile prof(r == 0 ? profile : "");
      lft::MetricsRegistry metrics;
      lft::TrainerRunnerOptions o;
      o.device = RankDevice(c, world, r);
      o.stores = pool;
      o.metrics = &metrics;
      o.engine_factory = lft::NewFlowTrainingEngine;
      lft::TrainerRunner runner(o);
      TimedRankContext ctx(
          &rv, r,
          &metrics.Counter("lft_trainer_input_wait_seconds_total", "",
                           {{"job", job}, {"role", "trainer"}}),
          &metrics.Counter("lft_trainer_input_prefetch_seconds_total", "",
                           {{"job", job}, {"role", "trainer"}}));
      lft::v1::Task t;
      t.set_job_id(job);
      t.set_store_address(c.store_address);
      auto* spec = t.mutable_spec();
      spec->mutable_teacher()->set_path(teacher);
      spec->mutable_block()->set_first_layer(0);
      spec->mutable_block()->set_end_layer(2);
      spec->set_sequence_length(c.seq);
      auto* tr = spec->mutable_training();
      tr->set_method(c.method == "sfm"          ? lft::v1::METHOD_SFM
                     : c.method == "regression" ? lft::v1::METHOD_REGRESSION
                                                : lft::v1::METHOD_FW);
      tr->set_flow_walking_steps(3);
      tr->set_solver(lft::v1::SOLVER_MIDPOINT);
      tr->set_max_steps(steps);
      tr->set_global_batch_sequences(GlobalBatch(c, world));
      tr->set_learning_rate(1e-3);
      tr->set_warmup_steps(1);
      tr->set_gradient_clip_norm(1.0);
      tr->set_checkpoint_every_steps(1000000);
      tr->set_seed(1);
      t.mutable_training()->set_world_size(world);
      t.mutable_training()->set_rank(r);
      auto res = runner.Run(t, &ctx);
      if (!res.ok()) {
        std::fprintf(stderr, "rank %d: %s\n", r,
                     res.status().ToString().c_str());
        ok = false;
      } else if (r == 0 && steps > kSkipSteps + 1 &&
                 ctx.times.count(kSkipSteps) && ctx.times.count(steps - 1)) {
        // The last step also writes the final checkpoint (~1 s at width
        // 1024): it is left out with the first ones.
        const int last = steps - 1;
        const double wall = std::chrono::duration<double>(ctx.times[last] -
                                                          ctx.times[kSkipSteps])
                                .count();
        timing.seconds = wall / (last - kSkipSteps);
        timing.input_wait = (ctx.waits[last] - ctx.waits[kSkipSteps]) / wall;
        timing.prefetch =
            (ctx.prefetches[last] - ctx.prefetches[kSkipSteps]) / wall;
        std::vector<double> each;
        for (int k = kSkipSteps + 1; k <= last; ++k) {
          each.push_back(
              std::chrono::duration<double>(ctx.times[k] - ctx.times[k - 1])
                  .count());
        }
        std::sort(each.begin(), each.end());
        timing.fastest = each.front();
        timing.median = each[each.size() / 2];
        timing.slowest = each.back();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (!ok) timing.seconds = -1;
  return timing;
}

// bf16 matmul peak of this device: 8192^3 products, best of 3 runs of 20.
double PeakTflops(const Config& c) {
  torch::Device device(c.device);
  auto o = torch::TensorOptions().dtype(torch::kBFloat16).device(device);
  torch::Tensor a = torch::randn({8192, 8192}, o),
                b = torch::randn({8192, 8192}, o);
  double best = 0;
  for (int run = 0; run < 4; ++run) {
    torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) (void)torch::mm(a, b);
    torch::cuda::synchronize();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
            .count();
    if (run > 0)
      best = std::max(best, 20 * 2.0 * 8192.0 * 8192 * 8192 / s / 1e12);
  }
  return best;
}

}  // namespace

// Whether the flow layer's AdaLN and rotary ops ran as worker/kernels'
// CUDA kernels (LFT_FUSED_KERNELS=0 turns them off for an A/B row).
bool FusedOpsInUse(const Config& c) {
  return c.device != "cpu" && lft::FusedKernelsEnabled();
}

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    bool ok = true;
    if (f == "--device")
      c.device = v;
    else if (f == "--method")
      c.method = v;
    else if (f == "--profile")
      c.profile = v;
    else if (f == "--store-address")
      c.store_address = v;
    else if (f == "--store-scan-streams")
      ok = absl::SimpleAtoi(v, &c.store_scan_streams) &&
           c.store_scan_streams > 0;
    else if (f == "--scaling") {
      c.scaling = v;
      ok = v == "strong" || v == "weak";
    } else if (f == "--peak-tflops")
      ok = absl::SimpleAtod(v, &c.peak_tflops);
    else if (f == "--hidden")
      ok = absl::SimpleAtoi(v, &c.hidden);
    else if (f == "--seq")
      ok = absl::SimpleAtoi(v, &c.seq);
    else if (f == "--batch")
      ok = absl::SimpleAtoi(v, &c.batch);
    else if (f == "--steps")
      ok = absl::SimpleAtoi(v, &c.steps);
    else if (f == "--ranks") {
      c.ranks.clear();
      for (absl::string_view p : absl::StrSplit(v, ',')) {
        int r = 0;
        ok = ok && absl::SimpleAtoi(p, &r);
        c.ranks.push_back(r);
      }
    } else
      ok = false;
    if (!ok) {
      std::fprintf(stderr, "bad flag %s %s\n", f.c_str(), v.c_str());
      return 2;
    }
  }
  const fs::path root = fs::temp_directory_path() /
                        ("trainer_throughput_" + std::to_string(getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "teacher");
  lft::NeoXConfig nc;
  nc.vocab_size = 512;
  nc.hidden_size = c.hidden;
  nc.num_hidden_layers = 2;
  nc.num_attention_heads = std::max(1, c.hidden / 64);
  nc.intermediate_size = 4 * c.hidden;
  nc.max_position_embeddings = std::max(2048, c.seq);
  std::ofstream(root / "teacher" / "config.json") << lft::NeoXConfigToJson(nc);
  if (!lft::SaveTensors(lft::GptNeoX::RandomTensors(nc, 1),
                        (root / "teacher" / "model.safetensors").string())
           .ok())
    return 1;
  lft::RemotePairStoreOptions remote;
  if (c.store_scan_streams > 0) remote.scan_streams = c.store_scan_streams;
  auto pool_owner =
      std::make_unique<lft::PairStorePool>((root / "store").string(), remote);
  lft::PairStorePool& pool = *pool_owner;
  auto got = pool.Get(c.store_address);
  if (!got.ok()) {
    std::fprintf(stderr, "store %s: %s\n", c.store_address.c_str(),
                 got.status().ToString().c_str());
    return 1;
  }
  lft::PairStore* store = *got;
  const int max_world = *std::max_element(c.ranks.begin(), c.ranks.end());
  if (c.device == "cuda" && max_world > 1 &&
      static_cast<int>(torch::cuda::device_count()) < max_world) {
    std::fprintf(stderr,
                 "--ranks up to %d on --device cuda needs one GPU per rank; "
                 "this host has %d\n",
                 max_world, static_cast<int>(torch::cuda::device_count()));
    return 2;
  }
  for (int world : c.ranks) {
    const std::string job = absl::StrCat("w", world);
    const int pairs = GlobalBatch(c, world) * (c.steps + 3);
    lft::JobConfig jc;
    jc.hidden = c.hidden;
    jc.codec = lft::TensorCodec::kBF16;
    (void)store->CreateJob(job, jc);
    std::vector<lft::LatentPairRecord> batch;
    auto gen = at::detail::createCPUGenerator(3);
    for (int i = 0; i < pairs; ++i) {
      torch::Tensor x = at::normal(0, 1, {c.seq, c.hidden}, gen).contiguous();
      lft::LatentPairRecord r;
      r.sequence = i;
      r.tokens = c.seq;
      r.hidden = c.hidden;
      r.codec = jc.codec;
      auto span = absl::MakeConstSpan(x.data_ptr<float>(), c.seq * c.hidden);
      (void)lft::EncodeRows(jc.codec, span, c.seq, c.hidden, &r.x0);
      (void)lft::EncodeRows(jc.codec, span, c.seq, c.hidden, &r.x1);
      batch.push_back(std::move(r));
      if (batch.size() == 16 || i + 1 == pairs) {
        (void)store->PutPairs(job, batch, absl::InfiniteFuture());
        batch.clear();
      }
    }
  }
  if (c.peak_tflops == 0 && c.device != "cpu") c.peak_tflops = PeakTflops(c);
  lft::FlowFlopsShape shape;
  shape.hidden = c.hidden;
  shape.intermediate = 4 * c.hidden;
  shape.sequence = c.seq;
  shape.evaluations = lft::FlowEvaluationsPerStep(c.method == "fw", false, 3,
                                                  /*midpoint=*/true);
  const double flops_per_token = lft::FlowStepFlopsPerToken(shape);
  std::printf(
      "\n%s step (%lld network evaluations), width %d, sequence %d, %s "
      "batch %d, device %s, torch threads %d, %.1f GFLOP per token, peak "
      "%.0f TFLOP/s\n\n",
      c.method == "fw" ? "FW k=3 midpoint" : c.method.c_str(),
      static_cast<long long>(shape.evaluations), c.hidden, c.seq,
      c.scaling == "weak" ? "per-rank" : "global", c.batch, c.device.c_str(),
      torch::get_num_threads(), flops_per_token / 1e9, c.peak_tflops);
  std::printf(
      "| store | ranks | step (s) | tokens/s | speed-up vs 1 rank | "
      "efficiency | MFU | input wait | read ahead |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  double base = 0, base_tps = 0;
  int base_world = 0;
  for (int world : c.ranks) {
    const std::string job = absl::StrCat("w", world);
    // Checkpoints of a run would let the next one resume.
    auto clear = [&]() {
      auto listed = store->ListCheckpoints(job);
      if (listed.ok()) {
        for (const lft::CheckpointInfo& ck : *listed)
          (void)store->DeleteCheckpoint(job, ck.name);
      }
    };
    // A discarded first run pays one-time costs (CUDA context, cuBLAS
    // handles, allocator growth) that would otherwise land in the short run.
    (void)RunSteps(c, &pool, (root / "teacher").string(), job, world,
                   kSkipSteps);
    clear();
    const StepTiming timing = RunSteps(c, &pool, (root / "teacher").string(),
                                       job, world, kSkipSteps + c.steps);
    if (timing.seconds <= 0) return 1;
    const double step = timing.seconds;
    const int global_batch = GlobalBatch(c, world);
    const double tps = global_batch * c.seq / step;
    if (base == 0) {
      base = step;
      base_tps = tps;
      base_world = world;
    }
    // tokens/s per rank relative to the first row's per rank.
    const double efficiency = (tps / world) / (base_tps / base_world);
    // Ranks on GPUs of their own: MFU per GPU.
    const int gpus = RankDevice(c, world, 0) != c.device ? world : 1;
    const double mfu = c.peak_tflops > 0 ? tps * flops_per_token /
                                               (gpus * c.peak_tflops * 1e12)
                                         : 0;
    const char* where = c.store_address.empty() ? "embedded" : "grpc";
    std::fprintf(stderr,
                 "single steps: fastest %.4f median %.4f slowest %.4f s\n",
                 timing.fastest, timing.median, timing.slowest);
    std::printf(
        "| %s | %d | %.4f | %.0f | %.2fx | %.3f | %.3f | %.3f | %.3f |\n",
        where, world, step, tps, base / step, efficiency, mfu,
        timing.input_wait, timing.prefetch);
    std::printf(
        "json {\"method\": \"%s\", \"store\": \"%s\", \"cuda_graph\": %s, "
        "\"fused_kernels\": %s, \"hidden\": %d, "
        "\"seq\": %d, \"batch\": %d, \"ranks\": %d, \"gpus\": %d, "
        "\"step_seconds\": %.5f, \"tokens_per_second\": %.1f, "
        "\"efficiency\": %.4f, "
        "\"mfu\": %.4f, \"input_wait_fraction\": %.4f, "
        "\"input_prefetch_fraction\": %.4f, "
        "\"peak_bf16_tflops\": %.1f, \"scan_streams\": %u, "
        "\"stream_window_mib\": %d}\n",
        c.method.c_str(), where,
        c.device != "cpu" &&
                !(std::getenv("LFT_TRAINER_CUDA_GRAPH") &&
                  std::string(std::getenv("LFT_TRAINER_CUDA_GRAPH")) == "0")
            ? "true"
            : "false",
        FusedOpsInUse(c) ? "true" : "false", c.hidden, c.seq, global_batch,
        world, gpus, step, tps, efficiency, mfu, timing.input_wait,
        timing.prefetch, c.peak_tflops,
        c.store_address.empty() ? 0u
                                : std::max<uint32_t>(1, remote.scan_streams),
        lft::BulkTransferSettingsFromEnv().stream_window_bytes >> 20);
    std::fflush(stdout);
    if (!c.profile.empty() && world == c.ranks.front()) {
      clear();
      (void)RunSteps(c, &pool, (root / "teacher").string(), job, world,
                     kSkipSteps + c.steps, c.profile);
    }
  }
  pool_owner.reset();  // RocksDB's background threads stop first
  std::error_code ec;
  fs::remove_all(root, ec);
  return 0;
}
