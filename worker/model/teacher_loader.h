// Loading a job's teacher for a worker runner: the GPT-NeoX weights on a
// device in the compute dtype, plus its tokenizer.json and <|endoftext|> id.
// Shared by the teacher, trainer and evaluator runners. Torch-free header.
#ifndef LFT_WORKER_MODEL_TEACHER_LOADER_H_
#define LFT_WORKER_MODEL_TEACHER_LOADER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/text/bpe_tokenizer.h"

namespace lft {

class GptNeoX;

struct LoadedTeacher {
  LoadedTeacher();
  ~LoadedTeacher();
  std::unique_ptr<GptNeoX> model;
  std::unique_ptr<BpeTokenizer> tokenizer;
  int32_t eos_id = 0;
  // Names, sizes and mtimes of the files it was loaded from (TeacherCache).
  std::string files_fingerprint;
};

// Whether a teacher runs in bfloat16: compute_dtype "bfloat16", or empty
// (the JobSpec default) on a CUDA device ("cuda", "cuda:N").
bool TeacherUsesBf16(const std::string& device,
                     const std::string& compute_dtype);

// Loads `dir` (config.json, weights, tokenizer.json) onto `device` ("cpu",
// "cuda", "cuda:N") in bfloat16 or float32. Errors: those of GptNeoX::Load
// and BpeTokenizer::FromFile, annotated with the teacher directory;
// InvalidArgument if tokenizer.json has no <|endoftext|> token or its id is
// outside the model's vocabulary.
absl::StatusOr<std::unique_ptr<LoadedTeacher>> LoadTeacherWithTokenizer(
    const std::string& dir, const std::string& device, bool bf16);

// The teachers a runner has loaded, kept for its life so that consecutive
// tasks of a job load the weights once. Thread-safe.
class TeacherCache {
 public:
  // Loads onto `device` ("cpu", "cuda", "cuda:N").
  explicit TeacherCache(std::string device) : device_(std::move(device)) {}

  // The teacher in `dir` in bfloat16 or float32, loaded on first use with
  // LoadTeacherWithTokenizer (its errors; nothing is cached on error), and
  // loaded again when a file it was loaded from changed size or mtime since
  // (so a teacher rewritten or truncated under a running worker fails the
  // next task with the loader's error instead of serving stale weights).
  // The pointer stays valid until the next Get of the same teacher.
  absl::StatusOr<LoadedTeacher*> Get(const std::string& dir, bool bf16);
  // Teachers loaded so far (keyed by directory and dtype).
  size_t size() const;

 private:
  const std::string device_;

  // State below is protected by mu_.
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, bool>, std::unique_ptr<LoadedTeacher>>
      teachers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lft

#endif  // LFT_WORKER_MODEL_TEACHER_LOADER_H_
