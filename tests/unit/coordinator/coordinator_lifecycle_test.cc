// The coordinator's side of a job's data (the latent store's per-job
// lifecycle: register at planning, pair retention, Delete), submit-time
// file checks, and progress a person can trust (recent-rate ETA, evaluation
// stages, no ETA once finished).
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/latent_store.h"
#include "tests/unit/coordinator/coordinator_fixture.h"

namespace lft {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"({"vocab_size": 16, "hidden_size": 8,
  "num_hidden_layers": 6, "num_attention_heads": 2, "intermediate_size": 32,
  "max_position_embeddings": 2048, "hidden_act": "gelu"})";

class CoordinatorLifecycleTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    auto store = LatentStore::Open(dir_.path() + "/store", {});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    latent_store_ = store_.get();
    pair_retention_ms_ = 3600 * 1000;
    teacher_ = dir_.path() + "/teacher";
    std::filesystem::create_directories(teacher_);
    std::ofstream(teacher_ + "/config.json") << kConfig;
    CoordinatorTest::SetUp();
  }
  void TearDown() override { core_.reset(); }

  lft::v1::JobSpec Spec() { return ValidSpec(teacher_); }

  // Some pairs, a checkpoint and a report, as the workers would write.
  void WriteJobData(const std::string& job) {
    std::vector<LatentPairRecord> pairs;
    for (uint32_t s = 0; s < 4; ++s) {
      LatentPairRecord p;
      p.shard = s;
      p.tokens = 2;
      p.hidden = 8;
      p.x0.assign(2 * 8 * 2, '\1');
      p.x1.assign(2 * 8 * 2, '\2');
      pairs.push_back(std::move(p));
    }
    ASSERT_TRUE(
        store_->PutPairs(job, pairs, absl::Now() + absl::Seconds(5)).ok());
    ASSERT_TRUE(store_->PutCheckpoint(job, "step-0000000005", "ckpt", "").ok());
    ASSERT_TRUE(store_->PutCheckpoint(job, "report.json", "{}", "").ok());
  }

  std::unique_ptr<LatentStore> store_;
  std::string teacher_;
};

// Teachers called CreateJob; the coordinator now registers the job, with
// the teacher's hidden width, before any extraction task exists.
TEST_F(CoordinatorLifecycleTest, PlanningRegistersTheJobWithTheStore) {
  const std::string job = SubmitAndPlan(Spec());
  EXPECT_EQ(State(job), lft::v1::JOB_STATE_EXTRACTING);
  auto stats = store_->Stats(job);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 0u);
  // The job exists with hidden 8: a pair of another width is refused.
  LatentPairRecord wide;
  wide.tokens = 1;
  wide.hidden = 16;
  wide.x0.assign(32, '\0');
  wide.x1.assign(32, '\0');
  EXPECT_THAT(store_->PutPairs(job, {wide}, absl::Now() + absl::Seconds(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, "hidden"));
}

TEST_F(CoordinatorLifecycleTest, DeleteRefusesARunningJobUnlessForced) {
  const std::string job = SubmitAndPlan(Spec());
  WriteJobData(job);
  EXPECT_THAT(core_->Delete(job, /*force=*/false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "is still running (EXTRACTING); cancel it first or "
                       "delete with --force"));
  EXPECT_TRUE(store_->Stats(job).ok());  // nothing deleted
  auto deleted = core_->Delete(job, /*force=*/true);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->state(), lft::v1::JOB_STATE_CANCELLED);
  EXPECT_GT(deleted->data_deleted_unix_ms(), 0);
  EXPECT_THAT(store_->Stats(job), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(store_->ListCheckpoints(job),
              StatusIs(absl::StatusCode::kNotFound, ""));
  // Again is fine; the job stays listed.
  EXPECT_TRUE(core_->Delete(job, false).ok());
  EXPECT_GT(core_->GetJob(job)->data_deleted_unix_ms(), 0);
  EXPECT_THAT(core_->Delete("j-99", false),
              StatusIs(absl::StatusCode::kNotFound, "no job has id"));
}

TEST_F(CoordinatorLifecycleTest, DeleteWithoutAStoreSaysSo) {
  latent_store_ = nullptr;
  Reopen();
  const std::string job = SubmitAndPlan(Spec());
  ASSERT_TRUE(core_->Cancel(job).ok());
  EXPECT_THAT(core_->Delete(job, false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "runs without a latent store"));
}

// Pairs of finished jobs stayed in the store forever.
TEST_F(CoordinatorLifecycleTest, PairsAreDeletedAfterTheRetention) {
  const std::string job = SubmitAndPlan(Spec());
  WriteJobData(job);
  ASSERT_TRUE(core_->Cancel(job).ok());
  clock_.AdvanceMs(pair_retention_ms_ - 1000);
  core_->Tick();
  EXPECT_EQ(store_->Stats(job)->pairs, 4u);  // not yet
  clock_.AdvanceMs(1000);
  core_->Tick();
  auto stats = store_->Stats(job);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pairs, 0u);
  EXPECT_EQ(stats->checkpoints, 1u);  // checkpoints and reports stay
  EXPECT_EQ(stats->reports, 1u);
  auto got = core_->GetJob(job);
  EXPECT_GT(got->pairs_deleted_unix_ms(), 0);
  EXPECT_EQ(got->data_deleted_unix_ms(), 0);
  bool finished = false;
  auto events = core_->WaitForEvents(job, 0, absl::ZeroDuration(), &finished);
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(events->back().message(),
              HasSubstr("pairs deleted from the latent store 3600 s after the "
                        "job ended (retention)"));
}

// Submit accepted a missing teacher or corpus and reported one problem of
// three; now every problem comes at once, each with its field.
TEST_F(CoordinatorLifecycleTest, SubmitReportsEveryInputProblemAtOnce) {
  check_inputs_ = true;
  Reopen();
  lft::v1::SubmitJobRequest r;
  *r.mutable_spec() = ValidSpec(dir_.path() + "/missing-teacher");
  r.mutable_spec()->mutable_training()->set_learning_rate(5);
  auto job = core_->Submit(r);
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "invalid job spec (4 problems)"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "training.learning_rate: must be in (0, 1)"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "teacher.path: " + dir_.path() +
                                "/missing-teacher is not a directory"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "corpus.jsonl_zst_paths[0]: "
                            "/data/pile-00.jsonl.zst does not exist"));
  EXPECT_THAT(job, StatusIs(absl::StatusCode::kInvalidArgument,
                            "evaluation.heldout_paths[0]: "
                            "/data/pile-val.jsonl.zst does not exist"));
}

// The first extraction ETA said 10m56s for a 35 s phase: the rate was the
// phase's average, dragged down by its start-up.
TEST_F(CoordinatorLifecycleTest, EtaComesFromTheRecentRate) {
  const std::string job = SubmitAndPlan(Spec());
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "t");
  lft::v1::Task t = Acquire(teacher);
  lft::v1::ReportProgressRequest p;
  p.set_worker_id(teacher);
  p.set_task_id(t.task_id());
  // 100 s of loading before the first documents, then 1000 tokens/s.
  clock_.AdvanceMs(100 * 1000);
  for (int s = 1; s <= 5; ++s) {
    if (s > 1) clock_.AdvanceMs(1000);
    p.set_documents_done(s);
    p.set_tokens_done(1000 * s);
    EXPECT_TRUE(core_->ReportProgress(p)->keep_going());
  }
  lft::v1::PhaseProgress prog = core_->GetJob(job)->progress(0);
  EXPECT_EQ(prog.units_total(), 30000u);  // 1000 tokens per doc, 30 docs
  EXPECT_DOUBLE_EQ(prog.units_per_second(), 1000.0);
  EXPECT_DOUBLE_EQ(prog.eta_seconds(), 25.0);
  // A cancelled job shows no ETA (it showed one).
  auto cancelled = core_->Cancel(job);
  ASSERT_TRUE(cancelled.ok());
  for (const auto& job_progress :
       {cancelled->progress(), core_->GetJob(job)->progress()}) {
    for (const auto& ph : job_progress) {
      EXPECT_EQ(ph.eta_seconds(), 0) << ph.ShortDebugString();
      EXPECT_EQ(ph.units_per_second(), 0) << ph.ShortDebugString();
    }
  }
}

// Evaluation sat at 0/48 sequences for 17 s while it trained the
// regression baseline.
TEST_F(CoordinatorLifecycleTest, EvaluationStagesAreVisible) {
  lft::v1::JobSpec spec = Spec();
  const std::string job = SubmitAndPlan(spec);
  const std::string teacher = Register(lft::v1::WORKER_ROLE_TEACHER, "t");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Complete(teacher, Acquire(teacher).task_id()).ok());
  }
  const std::string trainer = Register(lft::v1::WORKER_ROLE_TRAINER, "tr");
  ASSERT_TRUE(
      Complete(trainer, Acquire(trainer).task_id(), "", "step-20").ok());
  ASSERT_EQ(State(job), lft::v1::JOB_STATE_EVALUATING);
  const std::string evaluator = Register(lft::v1::WORKER_ROLE_EVALUATOR, "e");
  lft::v1::Task t = Acquire(evaluator);
  lft::v1::ReportProgressRequest p;
  p.set_worker_id(evaluator);
  p.set_task_id(t.task_id());
  p.set_stage("training the regression baseline");
  p.set_stage_unit("steps");
  p.set_stage_units_done(40);
  p.set_stage_units_total(200);
  ASSERT_TRUE(core_->ReportProgress(p)->keep_going());
  auto eval_progress = [&]() {
    const lft::v1::Job got = *core_->GetJob(job);
    for (const auto& ph : got.progress()) {
      if (ph.phase() == lft::v1::JOB_STATE_EVALUATING) return ph;
    }
    return lft::v1::PhaseProgress();
  };
  lft::v1::PhaseProgress e = eval_progress();
  EXPECT_EQ(e.stage(), "training the regression baseline");
  EXPECT_EQ(e.unit(), "steps");
  EXPECT_EQ(e.units_done(), 40u);
  EXPECT_EQ(e.units_total(), 200u);
  p.set_stage("scoring");
  p.set_stage_unit("sequences");
  p.set_stage_units_done(3);
  p.set_stage_units_total(8);
  p.set_sequences_done(3);
  ASSERT_TRUE(core_->ReportProgress(p)->keep_going());
  e = eval_progress();
  EXPECT_EQ(e.stage(), "scoring");
  EXPECT_EQ(e.unit(), "sequences");
  EXPECT_EQ(e.units_done(), 3u);
}

}  // namespace
}  // namespace lft
