// Teacher + tokenizer loading; see teacher_loader.h.
#include "worker/model/teacher_loader.h"

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/torch_guard.h"

namespace lft {

LoadedTeacher::LoadedTeacher() = default;
LoadedTeacher::~LoadedTeacher() = default;

bool TeacherUsesBf16(const std::string& device,
                     const std::string& compute_dtype) {
  if (!compute_dtype.empty()) return compute_dtype == "bfloat16";
  return device.rfind("cuda", 0) == 0;
}

absl::StatusOr<std::unique_ptr<LoadedTeacher>> LoadTeacherWithTokenizer(
    const std::string& dir, const std::string& device, bool bf16) {
  auto loaded = std::make_unique<LoadedTeacher>();
  absl::Status s = GuardTorch("loading teacher", [&]() -> absl::Status {
    NeoXLoadOptions lo;
    lo.device = torch::Device(device);
    lo.dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
    LFT_ASSIGN_OR_RETURN(loaded->model, GptNeoX::Load(dir, lo));
    return absl::OkStatus();
  });
  if (!s.ok()) return Annotate(s, absl::StrCat("teacher ", dir));
  const std::string tok_path = dir + "/tokenizer.json";
  LFT_ASSIGN_OR_RETURN(loaded->tokenizer, BpeTokenizer::FromFile(tok_path));
  const auto eos = loaded->tokenizer->TokenToId("<|endoftext|>");
  if (!eos.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(tok_path, ": has no <|endoftext|> token"));
  }
  loaded->eos_id = *eos;
  const int64_t vocab = loaded->model->config().vocab_size;
  if (*eos >= vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat(tok_path, ": <|endoftext|> id ", *eos,
                     " is outside the teacher's ", "vocabulary of ", vocab));
  }
  LogInfo("teacher loaded", {{"path", dir},
                             {"dtype", bf16 ? "bfloat16" : "float32"},
                             {"device", device}});
  return loaded;
}

absl::StatusOr<LoadedTeacher*> TeacherCache::Get(const std::string& dir,
                                                 bool bf16) {
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(dir, bf16);
  auto it = teachers_.find(key);
  if (it != teachers_.end()) return it->second.get();
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<LoadedTeacher> loaded,
                       LoadTeacherWithTokenizer(dir, device_, bf16));
  LoadedTeacher* raw = loaded.get();
  teachers_[key] = std::move(loaded);
  return raw;
}

size_t TeacherCache::size() const {
  absl::MutexLock lock(&mu_);
  return teachers_.size();
}

}  // namespace lft
