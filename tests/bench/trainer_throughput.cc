// Trainer step time: one FW (k = 3, midpoint) step of the latent flow layer
// on a random GPT-NeoX-shaped teacher layer, for 1 and 2 data-parallel ranks
// (in-process threads, Gloo on CPU / one rank on CUDA), reading random pairs
// from an embedded store. Step time = (wall of a run of S + 3 steps - wall
// of a run of 3 steps) / S, so loading, group forming and checkpoints of
// both runs cancel (after one discarded warm-up run). Prints a table; never
// pass/fail. On CPU run it with OPENBLAS_NUM_THREADS=1: the in-process
// ranks call BLAS concurrently, and OpenBLAS' own thread pool serialises
// them (measured: 2 ranks 0.46x of 1 rank with it, 1.48x without).
//
//   trainer_throughput [--device cpu|cuda] [--hidden 128] [--seq 128]
//                      [--batch 16] [--steps 20] [--ranks 1,2]
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/teacher_config.h"
#include "common/tensor/tensor_codec.h"
#include "latent-store/pair_store_pool.h"
#include "tests/unit/worker/trainer/in_process_group.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"
#include "worker/trainer/engine/flow_training_engine.h"
#include "worker/trainer/trainer_runner.h"

namespace fs = std::filesystem;

namespace {

struct Config {
  std::string device = "cpu";
  int hidden = 128, seq = 128, batch = 16, steps = 20;
  std::vector<int> ranks = {1, 2};
};

double RunSeconds(const Config& c, lft::PairStorePool* pool,
                  const std::string& teacher, const std::string& job, int world,
                  int steps) {
  lft::FakeRendezvous rv(world);
  std::vector<std::thread> threads;
  const auto t0 = std::chrono::steady_clock::now();
  bool ok = true;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r]() {
      lft::TrainerRunnerOptions o;
      o.device = c.device;
      o.stores = pool;
      o.engine_factory = lft::NewFlowTrainingEngine;
      lft::TrainerRunner runner(o);
      lft::InProcessRankContext ctx(&rv, r);
      lft::v1::Task t;
      t.set_job_id(job);
      auto* spec = t.mutable_spec();
      spec->mutable_teacher()->set_path(teacher);
      spec->mutable_block()->set_first_layer(0);
      spec->mutable_block()->set_end_layer(2);
      spec->set_sequence_length(c.seq);
      auto* tr = spec->mutable_training();
      tr->set_method(lft::v1::METHOD_FW);
      tr->set_flow_walking_steps(3);
      tr->set_solver(lft::v1::SOLVER_MIDPOINT);
      tr->set_max_steps(steps);
      tr->set_global_batch_sequences(c.batch);
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
      }
    });
  }
  for (auto& t : threads) t.join();
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  return ok ? s : -1;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string f = argv[i], v = argv[i + 1];
    bool ok = true;
    if (f == "--device")
      c.device = v;
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
  auto pool_owner = std::make_unique<lft::PairStorePool>(
      (root / "store").string(), lft::RemotePairStoreOptions());
  lft::PairStorePool& pool = *pool_owner;
  lft::PairStore* store = *pool.Get("");
  const int pairs = c.batch * (c.steps + 3);
  for (int world : c.ranks) {
    const std::string job = absl::StrCat("w", world);
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
  std::printf(
      "\nFW k=3 midpoint step, width %d, sequence %d, global batch %d, "
      "device %s, torch threads %d\n\n",
      c.hidden, c.seq, c.batch, c.device.c_str(), torch::get_num_threads());
  std::printf("| ranks | step (s) | tokens/s | speed-up vs 1 rank |\n");
  std::printf("|---|---|---|---|\n");
  double base = 0;
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
    (void)RunSeconds(c, &pool, (root / "teacher").string(), job, world, 3);
    clear();
    const double shortrun =
        RunSeconds(c, &pool, (root / "teacher").string(), job, world, 3);
    clear();
    const double longrun = RunSeconds(c, &pool, (root / "teacher").string(),
                                      job, world, 3 + c.steps);
    if (shortrun < 0 || longrun < 0) return 1;
    const double step = (longrun - shortrun) / c.steps;
    if (base == 0) base = step;
    std::printf("| %d | %.4f | %.0f | %.2fx |\n", world, step,
                c.batch * c.seq / step, base / step);
    std::fflush(stdout);
  }
  pool_owner.reset();  // RocksDB's background threads stop first
  std::error_code ec;
  fs::remove_all(root, ec);
  return 0;
}
