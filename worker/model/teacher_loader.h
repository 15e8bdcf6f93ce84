// Loading a job's teacher for a worker runner: the GPT-NeoX weights on a
// device in the compute dtype, plus its tokenizer.json and <|endoftext|> id.
// Shared by the teacher, trainer and evaluator runners. Torch-free header.
#ifndef LFT_WORKER_MODEL_TEACHER_LOADER_H_
#define LFT_WORKER_MODEL_TEACHER_LOADER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/bpe_tokenizer.h"

namespace lft {

class GptNeoX;

struct LoadedTeacher {
  LoadedTeacher();
  ~LoadedTeacher();
  std::unique_ptr<GptNeoX> model;
  std::unique_ptr<BpeTokenizer> tokenizer;
  int32_t eos_id = 0;
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

}  // namespace lft

#endif  // LFT_WORKER_MODEL_TEACHER_LOADER_H_
