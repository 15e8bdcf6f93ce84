// TrainerRunner + FlowTrainingEngine on a tiny random teacher (width 16,
// 3 layers) and an embedded LatentStore holding 48 random pairs:
//  - 2 ranks over Gloo with global batch 8 end with the same weights as 1
//    rank with batch 8 after 50 steps (tolerance below);
//  - the same in streaming mode while the pairs of 3 shards land out of
//    order under back-pressure, and a second 2-rank streaming run with
//    another arrival order ends bit-identical to the first;
//  - a run stopped after a checkpoint and resumed ends bit-identical to an
//    uninterrupted one, with the same loss curve;
//  - errors: too few pairs, batch not divisible by the ranks, a checkpoint
//    of another block.
// The ranks run as threads with an in-memory rendezvous standing in for
// the coordinator's (which tests/unit/coordinator covers).
#include "worker/trainer/trainer_runner.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/base/teacher_config.h"
#include "gtest/gtest.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/latent_store.h"
#include "latent-store/pair_store_pool.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/worker/runner_test_util.h"
#include "tests/unit/worker/trainer/in_process_group.h"
#include "tests/unit/worker/trainer/test_store.h"
#include "worker/model/flow_checkpoint.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/lr_schedule.h"
#include "worker/model/tensor_io.h"
#include "worker/trainer/engine/flow_training_engine.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using ::lft::testing::StatusIs;
using FakeContext = InProcessRankContext;

constexpr int kHidden = 16;
constexpr int kTokens = 8;
constexpr int kPairs = 48;

class TrainerRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(root_ / "teacher");
    NeoXConfig c;
    c.vocab_size = 50;
    c.hidden_size = kHidden;
    c.num_hidden_layers = 3;
    c.num_attention_heads = 2;
    c.intermediate_size = 32;
    c.max_position_embeddings = 64;
    c.rotary_pct = 0.5;
    ASSERT_TRUE(
        testing_util::WriteRandomTeacher((root_ / "teacher").string(), c, 3)
            .ok());
  }

  void WritePairs(const std::string& job, int count) {
    JobConfig jc;
    jc.hidden = kHidden;
    jc.codec = TensorCodec::kF32;
    ASSERT_TRUE(store_->CreateJob(job, jc).ok());
    ASSERT_TRUE(
        store_->PutPairs(job, MakePairs(count), absl::InfiniteFuture()).ok());
  }

  // The pairs of WritePairs, written while the group trains: one writer
  // per shard (i % 3), starting `stagger` apart in the order `arrival`,
  // each putting its pairs in key order, 4 at a time with `pause` between
  // batches, under back-pressure (bound streaming_buffer_pairs), and then
  // sealing its shard. Returns the writers; join them.
  std::vector<std::thread> StreamPairs(const std::string& job, int count,
                                       const std::vector<uint32_t>& arrival,
                                       absl::Duration stagger,
                                       absl::Duration pause) {
    JobConfig jc;
    jc.hidden = kHidden;
    jc.codec = TensorCodec::kF32;
    jc.max_pending_pairs = kStreamBuffer;
    EXPECT_TRUE(store_->CreateJob(job, jc).ok());
    std::vector<LatentPairRecord> all = MakePairs(count);
    std::vector<std::thread> writers;
    for (size_t i = 0; i < arrival.size(); ++i) {
      std::vector<LatentPairRecord> mine;
      for (const LatentPairRecord& p : all)
        if (p.shard == arrival[i]) mine.push_back(p);
      writers.emplace_back([this, job, i, stagger, pause, shard = arrival[i],
                            mine = std::move(mine)]() {
        absl::SleepFor(stagger * static_cast<int64_t>(i));
        for (size_t b = 0; b < mine.size(); b += 4) {
          absl::SleepFor(pause);
          std::vector<LatentPairRecord> batch(
              mine.begin() + static_cast<std::ptrdiff_t>(b),
              mine.begin() +
                  static_cast<std::ptrdiff_t>(std::min(b + 4, mine.size())));
          absl::Status s =
              store_->PutPairs(job, batch, absl::Now() + absl::Seconds(60));
          ASSERT_TRUE(s.ok()) << s;
        }
        absl::Status s = store_->SealShard(job, shard, mine.size());
        EXPECT_TRUE(s.ok()) << s;
      });
    }
    return writers;
  }

  std::vector<LatentPairRecord> MakePairs(int count) {
    auto gen = at::detail::createCPUGenerator(11);
    std::vector<LatentPairRecord> pairs;
    for (int i = 0; i < count; ++i) {
      torch::Tensor x0 = at::normal(0, 1, {kTokens, kHidden}, gen);
      // A smooth target so the loss has something to learn.
      torch::Tensor x1 = x0 + 0.5 * torch::tanh(x0.roll(1, 1));
      LatentPairRecord r;
      r.shard = static_cast<uint32_t>(i % 3);
      r.sequence = static_cast<uint64_t>(i);
      r.tokens = kTokens;
      r.hidden = kHidden;
      r.codec = TensorCodec::kF32;
      for (const torch::Tensor* t : {&x0, &x1}) {
        std::string& out = t == &x0 ? r.x0 : r.x1;
        EXPECT_TRUE(EncodeRows(TensorCodec::kF32,
                               absl::MakeConstSpan(t->data_ptr<float>(),
                                                   kTokens * kHidden),
                               kTokens, kHidden, &out)
                        .ok());
      }
      pairs.push_back(std::move(r));
    }
    return pairs;
  }

  lft::v1::Task MakeTask(const std::string& job, uint32_t world,
                         uint32_t rank) {
    lft::v1::Task t;
    t.set_task_id(absl::StrCat(job, "-t", rank));
    t.set_job_id(job);
    auto* spec = t.mutable_spec();
    spec->mutable_teacher()->set_path((root_ / "teacher").string());
    spec->mutable_block()->set_first_layer(1);
    spec->mutable_block()->set_end_layer(3);
    spec->set_sequence_length(kTokens);
    auto* tr = spec->mutable_training();
    tr->set_method(lft::v1::METHOD_FW);
    tr->set_flow_walking_steps(3);
    tr->set_solver(lft::v1::SOLVER_MIDPOINT);
    tr->set_max_steps(50);
    tr->set_global_batch_sequences(8);
    tr->set_learning_rate(3e-3);
    tr->set_weight_decay(0.01);
    tr->set_warmup_steps(5);
    tr->set_gradient_clip_norm(1.0);
    tr->set_checkpoint_every_steps(20);
    tr->set_trainer_ranks(world);
    tr->set_seed(5);
    if (streaming_) {
      tr->set_streaming(true);
      tr->set_streaming_buffer_pairs(kStreamBuffer);
    }
    auto* tt = t.mutable_training();
    tt->set_generation(1);
    tt->set_world_size(world);
    tt->set_rank(rank);
    tt->set_extraction_shards(3);
    return t;
  }

  TrainerRunnerOptions Options(const std::string& device = "cpu") {
    TrainerRunnerOptions o;
    o.device = device;
    o.stores = pool_;
    o.engine_factory = NewFlowTrainingEngine;
    o.collective_timeout = absl::Seconds(30);
    o.regroup_wait = absl::ZeroDuration();
    return o;
  }

  // Runs W ranks as threads; returns rank 0's result.
  absl::StatusOr<TaskResult> RunGroup(const std::string& job, uint32_t world,
                                      uint64_t stop_at_step = 0,
                                      const std::string& device = "cpu") {
    // As the coordinator does: resume from the job's latest checkpoint,
    // the one rank 0 last reported.
    FakeRendezvous rv(world, latest_checkpoint_[job]);
    std::vector<absl::StatusOr<TaskResult>> results(
        world, absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    std::string rank0_checkpoint;
    for (uint32_t r = 0; r < world; ++r) {
      threads.emplace_back([&, r]() {
        // Several CUDA ranks get a GPU each (NCCL allows one rank per GPU).
        TrainerRunner runner(Options(
            device == "cuda" && world > 1 ? absl::StrCat("cuda:", r) : device));
        FakeContext ctx(&rv, r);
        ctx.stop_at_step = stop_at_step;
        results[r] = runner.Run(MakeTask(job, world, r), &ctx);
        if (r == 0) rank0_checkpoint = ctx.last.checkpoint;
      });
    }
    for (auto& t : threads) t.join();
    if (!rank0_checkpoint.empty()) latest_checkpoint_[job] = rank0_checkpoint;
    for (uint32_t r = 1; r < world; ++r) {
      if (!results[r].ok()) return results[r].status();
    }
    return results[0];
  }

  FlowCheckpoint Load(const std::string& job, const std::string& name) {
    auto blob = store_->GetCheckpoint(job, name);
    EXPECT_TRUE(blob.ok()) << blob.status();
    auto c = ParseFlowCheckpoint(blob.ok() ? *blob : "");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : FlowCheckpoint();
  }

  // The weights a job's training starts from (what "moved" is measured
  // against).
  FlowCheckpoint InitialWeights(const std::string& job) {
    auto engine = NewFlowTrainingEngine(MakeTask(job, 1, 0).spec(), "cpu");
    EXPECT_TRUE(engine.ok()) << engine.status();
    if (!engine.ok()) return FlowCheckpoint();
    auto blob = (*engine)->SaveCheckpoint(TrainingPosition(), 1);
    EXPECT_TRUE(blob.ok()) << blob.status();
    auto c = ParseFlowCheckpoint(blob.ok() ? *blob : "");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : FlowCheckpoint();
  }

  static double MaxWeightDiff(const FlowCheckpoint& a,
                              const FlowCheckpoint& b) {
    double worst = 0;
    for (const auto& [name, t] : a.weights) {
      auto it = b.weights.find(name);
      if (it == b.weights.end()) return 1e9;
      worst = std::max(worst, (t - it->second).abs().max().item<double>());
    }
    return worst;
  }

  TestPairStore test_store_{"trainer_runner_test"};
  const fs::path root_ = test_store_.root();
  PairStorePool* const pool_ = test_store_.pool();
  PairStore* const store_ = test_store_.store();
  // Per job, the checkpoint rank 0 last reported (the coordinator's
  // JobRecord.latest_checkpoint).
  std::map<std::string, std::string> latest_checkpoint_;
  bool streaming_ = false;                       // tasks are streaming ones
  static constexpr uint64_t kStreamBuffer = 16;  // 2 global batches
};

TEST_F(TrainerRunnerTest, TwoRanksMatchOneRankAfterFiftySteps) {
  WritePairs("one", kPairs);
  WritePairs("two", kPairs);
  auto one = RunGroup("one", 1);
  ASSERT_TRUE(one.ok()) << one.status();
  auto two = RunGroup("two", 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(one->checkpoint, TrainingCheckpointName(50));
  EXPECT_EQ(two->checkpoint, TrainingCheckpointName(50));
  FlowCheckpoint a = Load("one", one->checkpoint);
  FlowCheckpoint b = Load("two", two->checkpoint);
  ASSERT_EQ(a.header.losses.size(), 50u);
  ASSERT_EQ(b.header.losses.size(), 50u);
  EXPECT_EQ(b.header.world_size, 2u);
  // Training moved the weights and lowered the loss.
  EXPECT_LT(a.header.losses.back(), 0.7 * a.header.losses.front());
  // Same pairs and times per step; only the summation order differs (two
  // half-batch means averaged vs one mean). float32 rounding of ~1e-7 per
  // step is amplified by Adam, which normalises near-zero gradients to
  // full-size updates: measured 1.0e-4 after 50 steps while the weights
  // moved 8.1e-2 from their initial values. The bound is 5e-4 (0.6% of that
  // movement); a wrong data split or a missing average shows in the loss
  // curve (checked to 1e-5 relative below) and moves weights by ~1e-2.
  const double diff = MaxWeightDiff(a, b);
  const FlowCheckpoint init = InitialWeights("one");
  const double moved = MaxWeightDiff(a, init);
  std::fprintf(stderr, "1 vs 2 ranks: max abs weight diff %.3g, moved %.3g\n",
               diff, moved);
  EXPECT_LT(diff, 5e-4) << "max abs weight difference " << diff;
  EXPECT_GT(moved, 100 * diff);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(a.header.losses[i], b.header.losses[i],
                1e-5 * (1 + a.header.losses[i]))
        << "step " << i;
  }
  // Three step-N checkpoints at most are kept.
  auto list = store_->ListCheckpoints("one");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 3u);  // steps 20, 40, 50
}

// Streaming: 48 pairs in 3 shards land while the group trains, in another
// order than their key order and under back-pressure. The stream (epoch 0:
// windows of 16 pairs) and the shuffled epochs after it give every step the
// same pairs for 1 and 2 ranks, so the weights agree within the bound of
// TwoRanksMatchOneRankAfterFiftySteps (5e-4; only the float32 summation
// order differs) and the loss curves to 1e-5 relative; and a second 2-rank
// run whose shards arrive in yet another order ends bit-identical to the
// first (same pairs on the same ranks in the same order: nothing depends on
// arrival).
TEST_F(TrainerRunnerTest, StreamingTwoRanksMatchOneRankWhileShardsArrive) {
  streaming_ = true;
  auto run = [&](const std::string& job, uint32_t world,
                 const std::vector<uint32_t>& arrival) {
    auto writers = StreamPairs(job, kPairs, arrival, absl::Milliseconds(150),
                               absl::Milliseconds(40));
    auto result = RunGroup(job, world);
    for (std::thread& t : writers) t.join();
    EXPECT_TRUE(result.ok()) << job << ": " << result.status();
    auto stats = store_->Stats(job);
    EXPECT_TRUE(stats.ok());
    // The stream's 48 pairs were each acknowledged once.
    if (stats.ok()) {
      EXPECT_EQ(stats->consumed, 48u) << job;
    }
    return Load(job, TrainingCheckpointName(50));
  };
  FlowCheckpoint one = run("one", 1, {0, 1, 2});
  FlowCheckpoint two = run("two", 2, {2, 0, 1});
  FlowCheckpoint again = run("again", 2, {1, 2, 0});
  ASSERT_EQ(one.header.losses.size(), 50u);
  ASSERT_EQ(two.header.losses.size(), 50u);
  const double diff = MaxWeightDiff(one, two);
  std::fprintf(stderr, "streaming 1 vs 2 ranks: max abs weight diff %.3g\n",
               diff);
  EXPECT_LT(diff, 5e-4);
  EXPECT_LT(one.header.losses.back(), 0.7 * one.header.losses.front());
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(one.header.losses[i], two.header.losses[i],
                1e-5 * (1 + one.header.losses[i]))
        << "step " << i;
  }
  EXPECT_EQ(MaxWeightDiff(two, again), 0.0);
  EXPECT_EQ(two.header.losses, again.header.losses);
}

TEST_F(TrainerRunnerTest, ResumedRunIsIdenticalToUninterruptedOne) {
  WritePairs("whole", kPairs);
  WritePairs("split", kPairs);
  auto whole = RunGroup("whole", 1);
  ASSERT_TRUE(whole.ok()) << whole.status();
  // Stopped at step 27 (after the step-20 checkpoint), then resumed.
  auto first = RunGroup("split", 1, /*stop_at_step=*/27);
  EXPECT_THAT(first.status(),
              StatusIs(absl::StatusCode::kCancelled, "test stop"));
  auto second = RunGroup("split", 1);
  ASSERT_TRUE(second.ok()) << second.status();
  FlowCheckpoint a = Load("whole", whole->checkpoint);
  FlowCheckpoint b = Load("split", second->checkpoint);
  EXPECT_EQ(MaxWeightDiff(a, b), 0.0);
  EXPECT_EQ(a.header.losses, b.header.losses);
  EXPECT_EQ(b.header.step, 50u);
  // 50 steps x 8 pairs over 48 pairs: the data position crossed epochs.
  EXPECT_EQ(a.header.epoch, b.header.epoch);
  EXPECT_GE(a.header.epoch, 8u);
}

TEST_F(TrainerRunnerTest, RefusesBadSetups) {
  WritePairs("few", 5);
  auto few = RunGroup("few", 1);
  EXPECT_THAT(few.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     "fewer than one global batch"));

  WritePairs("odd", kPairs);
  TrainerRunner runner(Options());
  FakeRendezvous rv(3);
  FakeContext ctx(&rv, 0);
  lft::v1::Task odd = MakeTask("odd", 3, 0);
  EXPECT_THAT(runner.Run(odd, &ctx).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "not a positive multiple of the 3 ranks"));

  // A checkpoint of block [0, 2) cannot resume a job training [1, 3).
  WritePairs("other", kPairs);
  auto engine_or = NewFlowTrainingEngine(MakeTask("x", 1, 0).spec(), "cpu");
  ASSERT_TRUE(engine_or.ok()) << engine_or.status();
  auto blob = (*engine_or)->SaveCheckpoint(TrainingPosition(), 1);
  ASSERT_TRUE(blob.ok());
  auto c = ParseFlowCheckpoint(*blob);
  ASSERT_TRUE(c.ok());
  c->header.first_layer = 0;
  c->header.end_layer = 2;
  auto foreign = SerializeFlowCheckpoint(*c);
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(
      store_->PutCheckpoint("other", "step-0000000005", *foreign, "").ok());
  latest_checkpoint_["other"] = "step-0000000005";  // the coordinator's pick
  auto other = RunGroup("other", 1);
  EXPECT_THAT(other.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                       "checkpoint is for block [0, 2)"));
}

// GPU (ctest label gpu runs this binary with --gtest_filter=*Cuda*): the
// same job on CUDA (bf16 evaluations, float32 state and master weights,
// steps replayed from a CUDA graph) follows the CPU float32 run. bf16 has
// 8 mantissa bits (relative rounding 2^-9 = 0.2%) per operation; over a
// layer and 50 Adam steps the loss curves were measured to agree within a
// few percent, so each step's loss must be within 10%.
TEST_F(TrainerRunnerTest, CudaRankFollowsCpuRankInBf16) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA not available";
  WritePairs("cpu", kPairs);
  WritePairs("gpu", kPairs);
  auto cpu = RunGroup("cpu", 1);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = RunGroup("gpu", 1, 0, "cuda");
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  FlowCheckpoint a = Load("cpu", cpu->checkpoint);
  FlowCheckpoint b = Load("gpu", gpu->checkpoint);
  ASSERT_EQ(b.header.losses.size(), 50u);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(b.header.losses[i], a.header.losses[i],
                0.1 * a.header.losses[i])
        << "step " << i;
  }
  std::fprintf(stderr, "cpu vs cuda: final loss %.5f vs %.5f, weights %.3g\n",
               a.header.losses.back(), b.header.losses.back(),
               MaxWeightDiff(a, b));
}

// Two CUDA ranks on two GPUs (NCCL all-reduce) follow one CUDA rank with
// the same global batch: the same pairs and times per step, only the
// reductions regrouped (two half-batch gradients summed by NCCL against one
// full batch; cuBLAS may pick other kernels for the half batch). That is
// the same kind of difference as CPU float32 vs CUDA bf16 above, whose
// final losses agree to 3e-4 relative, so each step's loss must agree to
// 2% and the weights may differ by at most a tenth of how far training
// moved them. Skips with fewer than two GPUs (issue 17's machine kind).
TEST_F(TrainerRunnerTest, TwoCudaRanksFollowOneCudaRankThroughNccl) {
  if (!torch::cuda::is_available() || torch::cuda::device_count() < 2) {
    GTEST_SKIP() << "needs two CUDA devices";
  }
  WritePairs("gpu1", kPairs);
  WritePairs("gpu2", kPairs);
  auto one = RunGroup("gpu1", 1, 0, "cuda");
  ASSERT_TRUE(one.ok()) << one.status();
  auto two = RunGroup("gpu2", 2, 0, "cuda");
  ASSERT_TRUE(two.ok()) << two.status();
  FlowCheckpoint a = Load("gpu1", one->checkpoint);
  FlowCheckpoint b = Load("gpu2", two->checkpoint);
  ASSERT_EQ(a.header.losses.size(), 50u);
  ASSERT_EQ(b.header.losses.size(), 50u);
  EXPECT_EQ(b.header.world_size, 2u);
  for (size_t i = 0; i < 50; ++i) {
    EXPECT_NEAR(b.header.losses[i], a.header.losses[i],
                0.02 * a.header.losses[i])
        << "step " << i;
  }
  const FlowCheckpoint init = InitialWeights("gpu1");
  const double diff = MaxWeightDiff(a, b);
  const double moved = MaxWeightDiff(a, init);
  std::fprintf(stderr,
               "1 vs 2 CUDA ranks: final loss %.6f vs %.6f, max abs weight "
               "diff %.3g, moved %.3g\n",
               a.header.losses.back(), b.header.losses.back(), diff, moved);
  EXPECT_LT(diff, 0.1 * moved);
}

// Replaying the recorded step gives what running it eagerly gives: the
// same kernels on the same inputs (cuDNN's attention backward may sum in
// another order, hence a tolerance far below bf16's 0.2% rounding).
TEST_F(TrainerRunnerTest, CudaGraphReplayFollowsEagerSteps) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA not available";
  WritePairs("graph", kPairs);
  WritePairs("eager", kPairs);
  setenv("LFT_TRAINER_CUDA_GRAPH", "require", 1);  // no silent eager
  auto graph = RunGroup("graph", 1, 0, "cuda");
  ASSERT_TRUE(graph.ok()) << graph.status();
  setenv("LFT_TRAINER_CUDA_GRAPH", "0", 1);
  auto eager = RunGroup("eager", 1, 0, "cuda");
  unsetenv("LFT_TRAINER_CUDA_GRAPH");
  ASSERT_TRUE(eager.ok()) << eager.status();
  FlowCheckpoint a = Load("eager", eager->checkpoint);
  FlowCheckpoint b = Load("graph", graph->checkpoint);
  ASSERT_EQ(a.header.losses.size(), b.header.losses.size());
  for (size_t i = 0; i < a.header.losses.size(); ++i) {
    EXPECT_NEAR(b.header.losses[i], a.header.losses[i],
                1e-4 * a.header.losses[i])
        << "step " << i;
  }
  std::fprintf(
      stderr, "graph vs eager: final loss %.6f vs %.6f, weights %.3g\n",
      b.header.losses.back(), a.header.losses.back(), MaxWeightDiff(a, b));
}

// With a recorded graph, ApplyGradients queues the staged next step ahead
// of its loss read. A next step whose pairs are not the staged ones (or
// staged for another step) must still train on its own pairs: two engines
// run the same steps, one staging the wrong pairs before every update,
// and end with the losses and weights of the one that stages none.
TEST_F(TrainerRunnerTest, CudaStepAheadOfTheWrongPairsChangesNothing) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "CUDA not available";
  setenv("LFT_TRAINER_CUDA_GRAPH", "require", 1);
  const lft::v1::JobSpec spec = MakeTask("ahead", 1, 0).spec();
  auto plain = NewFlowTrainingEngine(spec, "cuda");
  auto misled = NewFlowTrainingEngine(spec, "cuda");
  unsetenv("LFT_TRAINER_CUDA_GRAPH");
  ASSERT_TRUE(plain.ok() && misled.ok());
  const std::vector<LatentPairRecord> pairs = MakePairs(32);
  auto batch = [&](uint64_t step) {
    return absl::MakeConstSpan(pairs).subspan((step % 4) * 8, 8);
  };
  std::vector<double> a, b;
  for (uint64_t step = 0; step < 8; ++step) {
    ASSERT_TRUE((*plain)->ComputeGradients(batch(step), step).ok());
    auto la = (*plain)->ApplyGradients(1.0, 1.0, 1e-3);
    ASSERT_TRUE((*misled)->ComputeGradients(batch(step), step).ok());
    // Odd steps: the right step with the wrong pairs; even: the right
    // pairs under the wrong step. Both queue a replay nobody uses.
    if (step % 2 == 1) {
      (*misled)->StageNextStep(batch(step + 2), step + 1);
    } else {
      (*misled)->StageNextStep(batch(step + 1), step + 5);
    }
    auto lb = (*misled)->ApplyGradients(1.0, 1.0, 1e-3);
    ASSERT_TRUE(la.ok() && lb.ok());
    a.push_back(*la);
    b.push_back(*lb);
  }
  // Same up to the GPU's reduction order (attention backward); a step on
  // other pairs would move the loss by percents.
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i], a[i], 1e-5 * std::abs(a[i])) << "step " << i;
  }
  auto ca = (*plain)->SaveCheckpoint(TrainingPosition(), 1);
  auto cb = (*misled)->SaveCheckpoint(TrainingPosition(), 1);
  ASSERT_TRUE(ca.ok() && cb.ok());
  auto pa = ParseFlowCheckpoint(*ca);
  auto pb = ParseFlowCheckpoint(*cb);
  ASSERT_TRUE(pa.ok() && pb.ok());
  EXPECT_LT(MaxWeightDiff(*pa, *pb), 1e-5);
}

TEST(ScheduleTest, WarmupThenCosine) {
  EXPECT_DOUBLE_EQ(WarmupCosineLr(1.0, 0.1, 4, 104, 0), 0.25);
  EXPECT_DOUBLE_EQ(WarmupCosineLr(1.0, 0.1, 4, 104, 3), 1.0);
  EXPECT_DOUBLE_EQ(WarmupCosineLr(1.0, 0.1, 4, 104, 4), 1.0);
  EXPECT_NEAR(WarmupCosineLr(1.0, 0.1, 4, 104, 54), 0.55, 1e-12);
  EXPECT_NEAR(WarmupCosineLr(1.0, 0.1, 4, 104, 104), 0.1, 1e-12);
  EXPECT_EQ(TrainingCheckpointName(42), "step-0000000042");
}

}  // namespace
}  // namespace lft
