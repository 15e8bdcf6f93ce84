// Trainer groups with real processes on loopback (lft-store, lft-coordinator,
// lft-worker --role teacher / trainer, lft-fake-worker as the evaluator):
//  - elasticity: a 2-rank group whose rank is SIGKILLed mid-run re-forms
//    (with a replacement worker), resumes from the last checkpoint and ends
//    with exactly the weights and loss curve of an uninterrupted run of the
//    same job (the data order and flow times do not depend on restarts, and
//    a 2-rank sum is order-free);
//  - streaming: training starts while the teacher is still extracting, and
//    the store's back-pressure keeps the unconsumed pairs within the bound.
// Every wait is bounded.
#include <signal.h>

#include "absl/strings/strip.h"
#include "latent-store/remote_pair_store.h"
#include "tests/integration/local_cluster.h"
#include "tests/testing/promtool.h"
#include "worker/model/flow_checkpoint.h"

namespace lft {
namespace {

constexpr int kSteps = 40;

class TrainerIntegrationTest : public testing_util::LocalClusterTest {
 protected:
  std::string WriteSpec(const std::string& name, bool streaming) {
    const std::string path = Path(name + ".json");
    std::ofstream(path) << absl::StrCat(
        R"({"name": ")", name, R"(", "teacher": {"path": ")", teacher_,
        R"("}, "corpus": {"jsonlZstPaths": [")", corpus_,
        R"("], "documentsPerShard": 10}, "block": {"firstLayer": 1,)",
        R"( "endLayer": 3}, "sequenceLength": 32, "storageDtype": )",
        R"("STORAGE_DTYPE_F32", "training": {"method": "METHOD_FW", )",
        R"("maxSteps": )", kSteps,
        R"(, "globalBatchSequences": 4, "learningRate": 0.003, )",
        R"("warmupSteps": 4, "checkpointEverySteps": 10, "trainerRanks": )",
        streaming ? 1 : 2, R"(, "seed": 3, "streaming": )",
        streaming ? "true" : "false",
        streaming ? R"(, "streamingBufferPairs": 8)" : "",
        R"(}, "evaluation": {"maxSequences": 4, "heldoutPaths": [")", corpus_,
        R"("], "steps": [1, 3]}})");
    return path;
  }

  std::string Submit(const std::string& spec) {
    auto r = Ctl({"submit", spec});
    EXPECT_EQ(r.first, 0) << r.second;
    return std::string(absl::StripAsciiWhitespace(r.second));
  }

  // "latestStep" and "state" of `lftctl get --json`.
  std::pair<uint64_t, std::string> StepAndState(const std::string& job) {
    auto r = Ctl({"get", job, "--json"});
    uint64_t step = 0;
    const size_t at = r.second.find("\"latestStep\":");
    if (at != std::string::npos) {
      const size_t q1 = r.second.find_first_of("0123456789", at + 13);
      (void)absl::SimpleAtoi(
          r.second.substr(q1,
                          r.second.find_first_not_of("0123456789", q1) - q1),
          &step);
    }
    std::string state;
    const size_t s = r.second.find("\"state\": \"");
    if (s != std::string::npos)
      state = r.second.substr(s + 10, r.second.find('"', s + 10) - s - 10);
    return {step, state};
  }

  FlowCheckpoint Final(PairStore* store, const std::string& job) {
    auto blob = store->GetCheckpoint(job, "step-0000000040");
    EXPECT_TRUE(blob.ok()) << blob.status();
    auto c = ParseFlowCheckpoint(blob.ok() ? *blob : "");
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : FlowCheckpoint();
  }
};

// With GetParam() the pairs are sharded over two stores (--store-address
// a,b): the resumed ranks then skip what they had read of the interleaved
// order (there is no global block order to restart at).
class TrainerKillTest : public TrainerIntegrationTest,
                        public ::testing::WithParamInterface<bool> {};
INSTANTIATE_TEST_SUITE_P(OneAndTwoStores, TrainerKillTest, ::testing::Bool());

TEST_P(TrainerKillTest, KilledRankGroupReformsAndMatchesUninterruptedRun) {
  StartServices(/*second_store=*/GetParam());
  auto teacher = StartTeacher("teacher");
  auto ev = StartFake("evaluator", "ev");
  const std::vector<std::string> slow = {"--test-pause-ms-per-batch", "100"};
  auto a = StartWorker("trainer", "trainer-a", slow);
  auto b = StartWorker("trainer", "trainer-b", slow);

  const std::string whole = Submit(WriteSpec("whole", false));
  auto w1 = Ctl({"watch", whole}, absl::Seconds(120));
  ASSERT_EQ(w1.first, 0) << w1.second << a->err() << b->err();

  const std::string killed = Submit(WriteSpec("killed", false));
  // Kill trainer-b (bounded wait) once the group is past its step-10
  // checkpoint.
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline && StepAndState(killed).first < 14)
    absl::SleepFor(absl::Milliseconds(100));
  ASSERT_GE(StepAndState(killed).first, 14u) << b->err();
  ASSERT_LT(StepAndState(killed).first, static_cast<uint64_t>(kSteps));
  b->Kill(SIGKILL);
  ASSERT_EQ(b->Wait(absl::Seconds(5)), 128 + SIGKILL);
  auto c = StartWorker("trainer", "trainer-c", slow);
  auto w2 = Ctl({"watch", killed}, absl::Seconds(150));
  ASSERT_EQ(w2.first, 0) << w2.second << a->err() << c->err();
  EXPECT_NE(w2.second.find("re-formed as generation 2"), std::string::npos)
      << w2.second;
  EXPECT_NE(a->err().find("trainer resumed"), std::string::npos) << a->err();

  auto store = Client();
  FlowCheckpoint ref = Final(store.get(), whole);
  FlowCheckpoint got = Final(store.get(), killed);
  ASSERT_EQ(ref.header.losses.size(), static_cast<size_t>(kSteps));
  EXPECT_EQ(got.header.step, static_cast<uint64_t>(kSteps));
  EXPECT_EQ(got.header.losses, ref.header.losses) << "loss curve differs";
  ASSERT_EQ(got.weights.size(), ref.weights.size());
  for (const auto& [name, t] : ref.weights) {
    ASSERT_TRUE(got.weights.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, got.weights[name])) << name;
  }
  EXPECT_EQ(StepAndState(killed).second, "JOB_STATE_SUCCEEDED");
}

TEST_F(TrainerIntegrationTest,
       StreamingTrainsDuringExtractionUnderBackPressure) {
  StartServices();
  auto teacher = StartTeacher("teacher", {"--test-pause-ms-per-batch", "150"});
  auto trainer = StartWorker("trainer", "trainer", {"--metrics-port", "0"});
  // The real evaluator this time: the job ends with its report.
  auto ev = StartWorker("evaluator", "ev", {"--metrics-port", "0"});
  const std::string job = Submit(WriteSpec("stream", true));
  auto store = Client();
  bool trained_while_extracting = false;
  uint64_t max_pending = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  std::string state;
  while (absl::Now() < deadline) {
    auto [step, st] = StepAndState(job);
    state = st;
    if (st == "JOB_STATE_EXTRACTING" && step > 0)
      trained_while_extracting = true;
    // The bound holds while the trainer consumes; it is lifted when
    // training ends (logged first) so that the teacher can finish.
    const bool lifted =
        trainer->err().find("lifting back-pressure") != std::string::npos;
    auto stats = store->Stats(job);
    if (stats.ok() && !lifted)
      max_pending = std::max(max_pending, stats->pending);
    if (st == "JOB_STATE_SUCCEEDED" || st == "JOB_STATE_FAILED") break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(state, "JOB_STATE_SUCCEEDED") << trainer->err() << teacher->err();
  EXPECT_TRUE(trained_while_extracting);
  // Teachers write batches of 4 and are admitted while pending + 4 <= 8.
  EXPECT_LE(max_pending, 8u);
  EXPECT_GT(max_pending, 0u);
  auto stats = store->Stats(job);
  ASSERT_TRUE(stats.ok());
  EXPECT_GT(stats->pairs, 8u);  // more than the buffer went through
  auto report = store->GetCheckpoint(job, "report.md");
  ASSERT_TRUE(report.ok()) << report.status() << ev->err();
  EXPECT_NE(report->find("| skip-1 |"), std::string::npos) << *report;

  // The trainer's and the evaluator's /metrics pass promtool.
  const std::string trainer_metrics = ScrapeWorkerMetrics(trainer.get());
  const std::string eval_metrics = ScrapeWorkerMetrics(ev.get());
  EXPECT_NE(trainer_metrics.find("lft_trainer_loss{"), std::string::npos)
      << trainer_metrics;
  EXPECT_NE(eval_metrics.find("lft_eval_kl{"), std::string::npos)
      << eval_metrics;
  if (!::lft::testing::HavePromtool()) GTEST_SKIP() << "promtool not installed";
  for (const std::string* body : {&trainer_metrics, &eval_metrics}) {
    absl::Status s = ::lft::testing::PromtoolCheckMetrics(*body);
    EXPECT_TRUE(s.ok()) << s;
  }
}

}  // namespace
}  // namespace lft
