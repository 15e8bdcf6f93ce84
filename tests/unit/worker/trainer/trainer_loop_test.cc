// TrainerRunner's control loop without torch: a FakeTrainingEngine, an
// in-process FakeCollective group and an embedded LatentStore of tiny pairs
// (tests/unit/worker/trainer/fake_training.h). Covers checkpoint cadence and
// keep-last-N retention, resuming from the checkpoint the coordinator names,
// a failed all-reduce waiting for the group to re-form, and streaming
// training waiting for pairs that arrive later, with global batches that
// depend neither on the world size nor on the order in which shards land.
#include <deque>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/tensor/tensor_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/pair_store_pool.h"
#include "tests/testing/status_matchers.h"
#include "tests/unit/worker/trainer/fake_training.h"
#include "tests/unit/worker/trainer/in_process_group.h"
#include "tests/unit/worker/trainer/test_store.h"
#include "worker/trainer/trainer_runner.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;
using ::testing::ElementsAre;

constexpr uint32_t kHidden = 2;
constexpr uint32_t kTokens = 2;

class TrainerLoopTest : public ::testing::Test {
 protected:
  void CreateJob(const std::string& job, uint64_t max_pending_pairs = 0) {
    JobConfig jc;
    jc.hidden = kHidden;
    jc.codec = TensorCodec::kF32;
    jc.max_pending_pairs = max_pending_pairs;
    ASSERT_TRUE(store_->CreateJob(job, jc).ok());
  }

  // Bounded: a write blocked by back-pressure fails after 30 s.
  void WritePairs(const std::string& job, int count, uint64_t first = 0,
                  uint32_t shard = 0) {
    std::vector<LatentPairRecord> pairs;
    for (int i = 0; i < count; ++i) {
      LatentPairRecord r;
      r.shard = shard;
      r.sequence = first + static_cast<uint64_t>(i);
      r.tokens = kTokens;
      r.hidden = kHidden;
      r.codec = TensorCodec::kF32;
      const std::vector<float> v(kTokens * kHidden, static_cast<float>(i));
      ASSERT_TRUE(
          EncodeRows(TensorCodec::kF32, v, kTokens, kHidden, &r.x0).ok());
      r.x1 = r.x0;
      pairs.push_back(std::move(r));
    }
    absl::Status s =
        store_->PutPairs(job, pairs, absl::Now() + absl::Seconds(30));
    ASSERT_TRUE(s.ok()) << s;
  }

  lft::v1::Task MakeTask(const std::string& job, uint32_t world,
                         uint32_t rank) {
    lft::v1::Task t;
    t.set_task_id(absl::StrCat(job, "-t", rank));
    t.set_job_id(job);
    t.mutable_spec()->set_sequence_length(kTokens);
    auto* tr = t.mutable_spec()->mutable_training();
    tr->set_max_steps(steps);
    tr->set_global_batch_sequences(4);
    tr->set_learning_rate(0.1);
    tr->set_checkpoint_every_steps(every);
    tr->set_streaming(streaming);
    tr->set_streaming_buffer_pairs(buffer);
    tr->set_seed(3);
    t.mutable_training()->set_extraction_shards(shards);
    t.mutable_training()->set_generation(1);
    t.mutable_training()->set_world_size(world);
    t.mutable_training()->set_rank(rank);
    return t;
  }

  TrainerRunnerOptions Options(FakeCollectiveGroup* group, int failing_rank,
                               int fail_at_call) {
    TrainerRunnerOptions o;
    o.stores = pool_;
    o.engine_factory = [this](const lft::v1::JobSpec&, const std::string&)
        -> absl::StatusOr<std::unique_ptr<TrainingEngine>> {
      absl::MutexLock lock(&mu_);
      return std::unique_ptr<TrainingEngine>(
          std::make_unique<FakeTrainingEngine>(&seen_.emplace_back(), overlap,
                                               &staged_.emplace_back()));
    };
    o.transport_factory = [group, failing_rank, fail_at_call]() {
      return std::unique_ptr<GroupTransport>(
          std::make_unique<FakeGroupTransport>(group, failing_rank,
                                               fail_at_call));
    };
    o.keep_checkpoints = 2;
    o.regroup_wait = regroup_wait;
    return o;
  }

  // Runs `world` ranks as threads; results by rank. `contexts` outlive the
  // call so tests can read what each rank reported.
  std::vector<absl::StatusOr<TaskResult>> RunGroup(
      const std::string& job, uint32_t world, const std::string& resume = "",
      int failing_rank = -1, int fail_at_call = 0,
      const std::function<void(FakeCollectiveGroup*)>& watcher = nullptr) {
    FakeCollectiveGroup group(static_cast<int>(world));
    FakeRendezvous rv(world, resume);
    contexts.clear();
    for (uint32_t r = 0; r < world; ++r) {
      contexts.push_back(std::make_unique<InProcessRankContext>(&rv, r));
      contexts.back()->stop_at_step = stop_at_step;
    }
    std::vector<absl::StatusOr<TaskResult>> results(
        world, absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (uint32_t r = 0; r < world; ++r) {
      threads.emplace_back([&, r]() {
        TrainerRunner runner(Options(&group, failing_rank, fail_at_call));
        results[r] = runner.Run(MakeTask(job, world, r), contexts[r].get());
      });
    }
    std::thread watch;
    if (watcher) watch = std::thread([&] { watcher(&group); });
    for (auto& t : threads) t.join();
    if (watch.joinable()) watch.join();
    return results;
  }

  std::vector<std::string> TrainingCheckpoints(const std::string& job) {
    std::vector<std::string> names;
    auto list = store_->ListCheckpoints(job);
    EXPECT_TRUE(list.ok()) << list.status();
    if (!list.ok()) return names;
    for (const CheckpointInfo& c : *list) {
      if (IsTrainingCheckpoint(c.name)) names.push_back(c.name);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // Task knobs.
  uint64_t steps = 10;
  uint32_t every = 4;
  bool streaming = false;
  uint64_t buffer = 0;   // streaming_buffer_pairs (0: 4 global batches)
  uint32_t shards = 1;   // the job's extraction shards
  bool overlap = false;  // engines ask for read-ahead
  uint64_t stop_at_step = 0;
  absl::Duration regroup_wait = absl::Milliseconds(100);

  TestPairStore test_store_{"trainer_loop_test"};
  PairStorePool* const pool_ = test_store_.pool();
  PairStore* const store_ = test_store_.store();
  absl::Mutex mu_;
  // Per engine made (in order), the pairs it trained on.
  std::deque<std::vector<uint64_t>> seen_ ABSL_GUARDED_BY(mu_);
  // Per engine made, its StageNextStep calls: (step, sequences).
  std::deque<std::vector<std::pair<uint64_t, std::vector<uint64_t>>>> staged_
      ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<InProcessRankContext>> contexts;
};

TEST_F(TrainerLoopTest, TwoRanksCheckpointOnScheduleAndKeepTheLastTwo) {
  CreateJob("j");
  WritePairs("j", 16);
  auto results = RunGroup("j", 2);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  ASSERT_TRUE(results[1].ok()) << results[1].status();
  EXPECT_EQ(results[0]->checkpoint, TrainingCheckpointName(10));
  // step-4, step-8 and step-10 were written; keep_checkpoints = 2.
  EXPECT_THAT(
      TrainingCheckpoints("j"),
      ElementsAre(TrainingCheckpointName(8), TrainingCheckpointName(10)));
  // The loss is summed over ranks and scaled by 1 / world: 1 / (step + 1).
  EXPECT_NEAR(contexts[0]->last.loss, 1.0 / 10, 1e-7);  // f32 buffer
  EXPECT_EQ(contexts[1]->last.steps_done, 10u);
  // Each step's global batch of 4 is split 2 + 2 between the ranks.
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[0].size(), 20u);
  EXPECT_EQ(seen_[1].size(), 20u);
}

// An engine that overlaps input gets each step's pairs one step early
// (StageNextStep), except the first step of a run and of each epoch; it
// trains on the same pairs in the same order and ends at the same
// checkpoint as one that does not.
TEST_F(TrainerLoopTest, ReadAheadTrainsOnTheSamePairs) {
  CreateJob("plain");
  WritePairs("plain", 16);
  CreateJob("ahead");
  WritePairs("ahead", 16);
  ASSERT_TRUE(RunGroup("plain", 1)[0].ok());
  overlap = true;
  ASSERT_TRUE(RunGroup("ahead", 1)[0].ok());
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[1], seen_[0]);
  ASSERT_EQ(seen_[0].size(), 40u);  // 10 steps of 4
  EXPECT_TRUE(staged_[0].empty());
  // 16 pairs = 4 steps per epoch: steps 0, 4 and 8 open an epoch.
  std::vector<uint64_t> staged_steps;
  for (const auto& [step, seq] : staged_[1]) {
    staged_steps.push_back(step);
    const std::vector<uint64_t> trained(seen_[1].begin() + 4 * step,
                                        seen_[1].begin() + 4 * step + 4);
    EXPECT_EQ(seq, trained) << "step " << step;
  }
  EXPECT_THAT(staged_steps, ElementsAre(1, 2, 3, 5, 6, 7, 9));
  auto a = store_->GetCheckpoint("plain", TrainingCheckpointName(10));
  auto b = store_->GetCheckpoint("ahead", TrainingCheckpointName(10));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST_F(TrainerLoopTest, ResumesFromTheCheckpointTheCoordinatorNames) {
  CreateJob("j");
  WritePairs("j", 16);
  every = 3;
  stop_at_step = 7;  // after the step-6 checkpoint
  auto first = RunGroup("j", 1);
  EXPECT_THAT(first[0].status(),
              StatusIs(absl::StatusCode::kCancelled, "test stop"));
  EXPECT_EQ(contexts[0]->last.checkpoint, TrainingCheckpointName(6));

  stop_at_step = 0;
  auto second = RunGroup("j", 1, TrainingCheckpointName(6));
  ASSERT_TRUE(second[0].ok()) << second[0].status();
  // Steps 7..10 only: 4 steps of 4 pairs.
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(seen_.size(), 2u);
  EXPECT_EQ(seen_[1].size(), 16u);
  auto blob = store_->GetCheckpoint("j", TrainingCheckpointName(10));
  ASSERT_TRUE(blob.ok()) << blob.status();
  FakeTrainingEngine probe;
  auto pos = probe.RestoreCheckpoint(*blob);
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_EQ(pos->step, 10u);
  EXPECT_EQ(pos->losses.size(), 10u);
}

TEST_F(TrainerLoopTest, UnknownResumeCheckpointIsNamed) {
  CreateJob("j");
  WritePairs("j", 16);
  auto results = RunGroup("j", 1, TrainingCheckpointName(99));
  EXPECT_THAT(results[0].status(), StatusIs(absl::StatusCode::kNotFound,
                                            "resuming from step-0000000099"));
}

TEST_F(TrainerLoopTest, FailedAllReduceWaitsForTheGroupToReform) {
  CreateJob("j");
  WritePairs("j", 16);
  regroup_wait = absl::Seconds(30);
  // Rank 1's third all-reduce fails (its peer "died"); the coordinator
  // revokes both tasks when it re-forms the group.
  auto results = RunGroup("j", 2, "", /*failing_rank=*/1, /*fail_at_call=*/3,
                          [this](FakeCollectiveGroup* group) {
                            absl::SleepFor(absl::Milliseconds(300));
                            for (auto& c : contexts) {
                              c->token.Cancel("group re-formed");
                            }
                          });
  for (int r = 0; r < 2; ++r) {
    EXPECT_THAT(results[r].status(),
                StatusIs(absl::StatusCode::kCancelled, "group re-formed"))
        << "rank " << r;
  }
}

TEST_F(TrainerLoopTest, FailedAllReduceIsReportedWhenNoRegroupComes) {
  CreateJob("j");
  WritePairs("j", 16);
  auto results = RunGroup("j", 2, "", /*failing_rank=*/1, /*fail_at_call=*/2);
  EXPECT_THAT(results[1].status(), StatusIs(absl::StatusCode::kUnavailable,
                                            "fake peer connection reset"));
  EXPECT_FALSE(results[0].ok());
}

TEST_F(TrainerLoopTest, StreamingWaitsForPairsAndAcknowledgesThem) {
  streaming = true;
  steps = 3;
  CreateJob("j");
  std::thread writer([this] {
    absl::SleepFor(absl::Milliseconds(300));
    WritePairs("j", 8);
    ASSERT_TRUE(store_->SealShard("j", 0, 8).ok());
  });
  auto results = RunGroup("j", 1);
  writer.join();
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  auto stats = store_->Stats("j");
  ASSERT_TRUE(stats.ok()) << stats.status();
  // The stream (8 pairs) gave 2 steps, acknowledged; the third step
  // re-read the complete stream in a shuffled epoch.
  EXPECT_EQ(stats->consumed, 8u);
}

// Streaming with 3 shards of 6 pairs that land while the group trains, in
// another order than their key order (2, 0, 1) and under back-pressure
// (bound 8, 2 global batches): every step's global batch is the same set of
// pairs for W = 1 and W = 2, whatever the arrival order, and for a W = 2
// group stopped after its step-2 checkpoint and resumed; each global batch
// of the stream is acknowledged once, not once per rank or per run.
TEST_F(TrainerLoopTest, StreamingGlobalBatchesDoNotDependOnRanksOrArrival) {
  streaming = true;
  shards = 3;
  buffer = 8;
  steps = 8;  // stream windows [0, 8), [8, 16); then a shuffled epoch of 18
  every = 2;
  // Per step, the union of what the ranks trained on.
  auto batches = [this](size_t first_engine, uint64_t first_step) {
    absl::MutexLock lock(&mu_);
    std::vector<std::set<uint64_t>> out(steps - first_step);
    const size_t engines = seen_.size() - first_engine;
    for (size_t e = first_engine; e < seen_.size(); ++e) {
      const size_t per_rank = 4 / engines;
      for (size_t i = 0; i < seen_[e].size(); ++i)
        out[i / per_rank].insert(seen_[e][i]);
    }
    return out;
  };
  // One teacher per shard, starting 60 ms apart in `arrival` order; each
  // writes its shard's 3 batches of 2 in order, then seals it.
  auto run = [&](const std::string& job, uint32_t world,
                 const std::vector<uint32_t>& arrival) {
    CreateJob(job, buffer);
    std::vector<std::thread> teachers;
    for (size_t i = 0; i < arrival.size(); ++i) {
      teachers.emplace_back([&, i] {
        const uint32_t shard = arrival[i];
        absl::SleepFor(absl::Milliseconds(60 * static_cast<int64_t>(i)));
        for (uint64_t b = 0; b < 3; ++b) {
          absl::SleepFor(absl::Milliseconds(20));
          WritePairs(job, 2, 100 * shard + 2 * b, shard);
        }
        absl::Status s = store_->SealShard(job, shard, 6);
        EXPECT_TRUE(s.ok()) << s;
      });
    }
    size_t first_engine = 0;
    {
      absl::MutexLock lock(&mu_);
      first_engine = seen_.size();
    }
    auto results = RunGroup(job, world);
    for (std::thread& t : teachers) t.join();
    if (stop_at_step == 0) {
      for (uint32_t r = 0; r < world; ++r)
        EXPECT_TRUE(results[r].ok())
            << job << " rank " << r << ": " << results[r].status();
      auto stats = store_->Stats(job);
      EXPECT_TRUE(stats.ok() && stats->consumed == 16u)
          << job << ": consumed " << (stats.ok() ? stats->consumed : 0);
    } else {
      EXPECT_THAT(results[0].status(),
                  StatusIs(absl::StatusCode::kCancelled, "test stop"));
    }
    return batches(first_engine, 0);
  };
  const auto one = run("one", 1, {0, 1, 2});
  const auto two = run("two", 2, {2, 0, 1});
  const auto late = run("late", 2, {1, 2, 0});
  ASSERT_EQ(one.size(), 8u);
  for (size_t s = 0; s < one.size(); ++s) {
    EXPECT_EQ(one[s].size(), 4u) << "step " << s;
    EXPECT_EQ(two[s], one[s]) << "step " << s;
    EXPECT_EQ(late[s], one[s]) << "step " << s;
  }
  // The stream's first window is pairs [0, 8) of the key order: shard 0
  // and the first two of shard 1, shuffled.
  std::set<uint64_t> first_window = one[0];
  first_window.insert(one[1].begin(), one[1].end());
  EXPECT_EQ(first_window, (std::set<uint64_t>{0, 1, 2, 3, 4, 5, 100, 101}));

  // Stopped after step 3 (its checkpoint is step-2) while shards still
  // land, then resumed from step-2 over the complete stream.
  stop_at_step = 3;
  run("split", 2, {2, 0, 1});
  stop_at_step = 0;
  size_t resumed_engine = 0;
  {
    absl::MutexLock lock(&mu_);
    resumed_engine = seen_.size();
  }
  auto second = RunGroup("split", 2, TrainingCheckpointName(2));
  ASSERT_TRUE(second[0].ok()) << second[0].status();
  ASSERT_TRUE(second[1].ok()) << second[1].status();
  const auto resumed = batches(resumed_engine, 2);
  ASSERT_EQ(resumed.size(), 6u);
  for (size_t s = 0; s < resumed.size(); ++s)
    EXPECT_EQ(resumed[s], one[s + 2]) << "step " << s + 2;
  // Steps 2 and 3 ran twice; their pairs count once.
  EXPECT_EQ(store_->Stats("split")->consumed, 16u);
}

}  // namespace
}  // namespace lft
