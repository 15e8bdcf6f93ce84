// Teacher + tokenizer loading; see teacher_loader.h.
#include "worker/model/teacher_loader.h"

#include <sys/stat.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

namespace {

// Name, size and modification time of every file of the teacher directory
// that loading reads; "" if the directory cannot be listed.
std::string FilesFingerprint(const std::string& dir) {
  std::vector<std::string> parts;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != "config.json" && name != "tokenizer.json" &&
        !absl::EndsWith(name, ".safetensors") &&
        !absl::EndsWith(name, ".index.json")) {
      continue;
    }
    struct stat st;
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    parts.push_back(absl::StrCat(name, ":", st.st_size, ":", st.st_mtim.tv_sec,
                                 ".", st.st_mtim.tv_nsec));
  }
  std::sort(parts.begin(), parts.end());
  return absl::StrJoin(parts, ",");
}

}  // namespace

absl::StatusOr<LoadedTeacher*> TeacherCache::Get(const std::string& dir,
                                                 bool bf16) {
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(dir, bf16);
  const std::string fingerprint = FilesFingerprint(dir);
  auto it = teachers_.find(key);
  if (it != teachers_.end()) {
    if (it->second->files_fingerprint == fingerprint) return it->second.get();
    // Rewritten (or truncated) under us: the next task gets what is on disk
    // now, or an error naming the bad file.
    LogWarning("teacher files changed on disk; reloading", {{"path", dir}});
    teachers_.erase(it);
  }
  LFT_ASSIGN_OR_RETURN(std::unique_ptr<LoadedTeacher> loaded,
                       LoadTeacherWithTokenizer(dir, device_, bf16));
  loaded->files_fingerprint = fingerprint;
  LoadedTeacher* raw = loaded.get();
  teachers_[key] = std::move(loaded);
  return raw;
}

size_t TeacherCache::size() const {
  absl::MutexLock lock(&mu_);
  return teachers_.size();
}

}  // namespace lft
