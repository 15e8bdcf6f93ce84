// Fixtures shared by the worker runner tests (teacher, trainer, evaluator)
// and the integration tests that start real workers: a teacher directory
// with random GPT-NeoX weights and a BPE tokenizer trained on the test's own
// text, a Pile-format corpus file, and a TaskContext that records progress.
#ifndef LFT_TESTS_UNIT_WORKER_RUNNER_TEST_UTIL_H_
#define LFT_TESTS_UNIT_WORKER_RUNNER_TEST_UTIL_H_

#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/base/teacher_config.h"
#include "common/corpus/jsonl_zst.h"
#include "common/text/bpe_trainer.h"
#include "worker/agent/task_runner.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/tensor_io.h"

namespace lft {
namespace testing_util {

// Writes dir/config.json and dir/model.safetensors (random weights drawn
// from `seed`); `dir` must exist.
inline absl::Status WriteRandomTeacher(const std::string& dir,
                                       const NeoXConfig& config,
                                       uint64_t seed) {
  std::ofstream(dir + "/config.json") << NeoXConfigToJson(config);
  return SaveTensors(GptNeoX::RandomTensors(config, seed),
                     dir + "/model.safetensors");
}

// Trains a byte-level BPE of `vocab_size` on `texts`, writes
// dir/tokenizer.json and returns its JSON.
inline absl::StatusOr<std::string> WriteTrainedTokenizer(
    const std::string& dir, int vocab_size,
    const std::vector<std::string>& texts) {
  BpeTrainerOptions options;
  options.vocab_size = vocab_size;
  BpeTrainer trainer(options);
  for (const std::string& t : texts) trainer.AddText(t);
  LFT_ASSIGN_OR_RETURN(std::string json, trainer.TrainToJson());
  std::ofstream(dir + "/tokenizer.json") << json;
  return json;
}

// Writes `texts` as a Pile-format jsonl.zst file (pile_set_name Synthetic).
inline absl::Status WritePileFile(const std::string& path,
                                  const std::vector<std::string>& texts) {
  LFT_ASSIGN_OR_RETURN(auto writer, JsonlZstWriter::Open(path));
  for (const std::string& t : texts) {
    LFT_RETURN_IF_ERROR(writer->Write(t, "Synthetic"));
  }
  return writer->Close();
}

// Records the latest progress; cancels itself after `cancel_after_reports`
// reports (0 = never). No rendezvous.
class RecordingTaskContext : public TaskContext {
 public:
  bool ReportProgress(const ProgressUpdate& update) override {
    last = update;
    ++reports;
    if (cancel_after_reports > 0 && reports >= cancel_after_reports) {
      token.Cancel("test cancel");
    }
    return !token.cancelled();
  }
  const CancellationToken& cancellation() const override { return token; }
  absl::StatusOr<RendezvousResult> Rendezvous(const std::string&) override {
    return absl::UnimplementedError("no rendezvous");
  }
  CancellationToken token;
  ProgressUpdate last;
  int reports = 0;
  int cancel_after_reports = 0;
};

}  // namespace testing_util
}  // namespace lft

#endif  // LFT_TESTS_UNIT_WORKER_RUNNER_TEST_UTIL_H_
