// kill -9 of lft-store in every phase of a real job (teacher, trainer and
// evaluator workers, lft-coordinator, lftctl on loopback), restarted on the
// same address and directory after 1 s and after 20 s: every job ends
// SUCCEEDED with a report identical to an uninterrupted run's, because the
// workers wait for the store (latent-store/retrying_pair_store.h) instead
// of failing their tasks, and a teacher redoes a shard whose unsynced pairs
// the restart may have lost. Every wait is bounded.
#include <signal.h>
#include <sys/wait.h>

#include <functional>

#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "tests/integration/local_cluster.h"

namespace lft {
namespace {

using testing_util::StoreProcess;

constexpr char kUnavailableLog[] = "latent store unavailable; waiting to retry";

class StoreRestartTest : public testing_util::LocalClusterTest {
 protected:
  void StartWorkers() {
    StartServices();
    // Paused so that each phase lasts long enough to be hit: 100 ms per
    // teacher batch, 150 ms per trainer step, 500 ms before the evaluator
    // writes its results.
    teacher_proc_ =
        StartTeacher("teacher", {"--test-pause-ms-per-batch", "100"});
    trainer_proc_ =
        StartWorker("trainer", "trainer", {"--test-pause-ms-per-batch", "150"});
    evaluator_proc_ = StartWorker("evaluator", "evaluator",
                                  {"--test-pause-ms-per-batch", "500"});
  }

  std::string Submit(const std::string& name) {
    const std::string path = Path(name + ".json");
    std::ofstream(path) << absl::StrCat(
        R"({"name": "restart", "teacher": {"path": ")", teacher_,
        R"("}, "corpus": {"jsonlZstPaths": [")", corpus_,
        R"("], "documentsPerShard": 10}, "block": {"firstLayer": 1,)",
        R"( "endLayer": 3}, "sequenceLength": 32, "storageDtype": )",
        R"("STORAGE_DTYPE_F32", "training": {"method": "METHOD_FW", )",
        R"("maxSteps": 30, "globalBatchSequences": 4, "learningRate": 0.003,)",
        R"( "warmupSteps": 4, "checkpointEverySteps": 2, "trainerRanks": 1,)",
        R"( "seed": 3}, "evaluation": {"maxSequences": 4, "heldoutPaths": [")",
        corpus_, R"("], "steps": [1, 3]}})");
    auto r = Ctl({"submit", path});
    EXPECT_EQ(r.first, 0) << r.second;
    return std::string(absl::StripAsciiWhitespace(r.second));
  }

  // {state, latest step} from `lftctl get --json`.
  std::pair<std::string, uint64_t> StateAndStep(const std::string& job) {
    auto r = Ctl({"get", job, "--json"});
    std::string state;
    const size_t s = r.second.find("\"state\": \"");
    if (s != std::string::npos)
      state = r.second.substr(s + 10, r.second.find('"', s + 10) - s - 10);
    uint64_t step = 0;
    const size_t at = r.second.find("\"latestStep\":");
    if (at != std::string::npos) {
      const size_t q = r.second.find_first_of("0123456789", at + 13);
      (void)absl::SimpleAtoi(
          r.second.substr(q, r.second.find_first_not_of("0123456789", q) - q),
          &step);
    }
    return {state, step};
  }

  // Polls `ready` every 20 ms for up to 60 s.
  bool WaitUntil(const std::function<bool()>& ready) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      if (ready()) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  void KillAndRestartStore(absl::Duration down) {
    const std::string address = store_->address();
    const int status = store_->Kill(SIGKILL);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    absl::SleepFor(down);
    auto restarted = StoreProcess::Start(
        LFT_STORE_BIN,
        {"--listen", address, "--insecure-loopback", "--token", kToken, "--db",
         Path("store"), "--metrics-port", "0"},
        absl::Seconds(20));
    ASSERT_TRUE(restarted.ok()) << restarted.status();
    store_ = std::make_unique<StoreProcess>(std::move(*restarted));
  }

  // Waits for the job's end; its report.json with the job id blanked.
  std::string FinishedReport(const std::string& job) {
    auto watch = Ctl({"watch", job}, absl::Seconds(150));
    EXPECT_EQ(watch.first, 0) << watch.second << Logs();
    EXPECT_NE(watch.second.find("SUCCEEDED"), std::string::npos)
        << watch.second << Logs();
    auto report = Client()->GetCheckpoint(job, "report.json");
    EXPECT_TRUE(report.ok()) << report.status();
    return absl::StrReplaceAll(report.ok() ? *report : "", {{job, "JOB"}});
  }

  std::string Logs() {
    return absl::StrCat("\n--- teacher\n", teacher_proc_->err(),
                        "\n--- trainer\n", trainer_proc_->err(),
                        "\n--- evaluator\n", evaluator_proc_->err());
  }

  // How often `text` occurs in `log`.
  static size_t Count(const std::string& log, const std::string& text) {
    size_t n = 0;
    for (size_t at = log.find(text); at != std::string::npos;
         at = log.find(text, at + 1))
      ++n;
    return n;
  }

  std::unique_ptr<Process> teacher_proc_, trainer_proc_, evaluator_proc_;
};

TEST_F(StoreRestartTest, StoreKilledInEachPhaseRestartedAfter1sSameReport) {
  StartWorkers();
  const std::string reference = FinishedReport(Submit("reference"));
  ASSERT_NE(reference.find("\"rows\""), std::string::npos) << reference;
  auto client = Client();

  // Extraction: once the job's first pairs are in the store.
  const std::string extraction = Submit("extraction");
  ASSERT_TRUE(WaitUntil([&] {
    auto s = client->Stats(extraction);
    return s.ok() && s->pairs > 0;
  }));
  KillAndRestartStore(absl::Seconds(1));
  EXPECT_EQ(FinishedReport(extraction), reference);
  EXPECT_GT(Count(teacher_proc_->err(), kUnavailableLog), 0u) << Logs();

  // Training: checkpoints every 2 steps (about 0.4 s), so the trainer
  // writes to the store while it is down.
  const std::string training = Submit("training");
  ASSERT_TRUE(WaitUntil([&] {
    auto [state, step] = StateAndStep(training);
    return state == "JOB_STATE_TRAINING" && step >= 3;
  })) << Logs();
  KillAndRestartStore(absl::Seconds(1));
  EXPECT_EQ(FinishedReport(training), reference);
  EXPECT_GT(Count(trainer_proc_->err(), kUnavailableLog), 0u) << Logs();

  // Evaluation: while the evaluator pauses before writing its results.
  const std::string evaluation = Submit("evaluation");
  const size_t pauses_before =
      Count(evaluator_proc_->err(), "pausing before writing the results");
  ASSERT_TRUE(WaitUntil([&] {
    return Count(evaluator_proc_->err(), "pausing before writing the results") >
           pauses_before;
  })) << Logs();
  KillAndRestartStore(absl::Seconds(1));
  EXPECT_EQ(FinishedReport(evaluation), reference);
  EXPECT_GT(Count(evaluator_proc_->err(), kUnavailableLog), 0u) << Logs();
}

// The store stays down for 20 s in the middle of training (longer than a
// lease, so heartbeats must carry the trainer's task meanwhile).
TEST_F(StoreRestartTest, StoreDown20sDuringTrainingJobSucceedsSameReport) {
  StartWorkers();
  const std::string reference = FinishedReport(Submit("reference"));
  const std::string job = Submit("down20s");
  ASSERT_TRUE(WaitUntil([&] {
    auto [state, step] = StateAndStep(job);
    return state == "JOB_STATE_TRAINING" && step >= 3;
  })) << Logs();
  KillAndRestartStore(absl::Seconds(20));
  EXPECT_EQ(FinishedReport(job), reference);
  EXPECT_NE(trainer_proc_->err().find("latent store reachable again"),
            std::string::npos)
      << Logs();
}

}  // namespace
}  // namespace lft
