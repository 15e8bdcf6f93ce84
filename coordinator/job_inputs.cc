#include "coordinator/job_inputs.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/tensor/safetensors.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

using Json = nlohmann::json;

constexpr unsigned char kZstdMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};
constexpr char kMegatronIndexMagic[9] = {'M', 'M', 'I',  'D', 'I',
                                         'D', 'X', '\0', '\0'};

class Problems {
 public:
  explicit Problems(std::vector<SpecProblem>* out) : out_(out) {}
  void Add(std::string field, std::string message) {
    out_->push_back({std::move(field), std::move(message)});
  }

 private:
  std::vector<SpecProblem>* out_;
};

// Empty if `path` is a regular file this process can read; otherwise why
// not, in a user's words. Never opens anything but a regular file.
std::string WhyUnreadable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::StrCat(path, " does not exist");
    return absl::StrCat(path, ": ", std::strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) return absl::StrCat(path, " is a directory");
  if (!S_ISREG(st.st_mode)) {
    return absl::StrCat(path, " is not a regular file (",
                        S_ISFIFO(st.st_mode) ? "a FIFO" : "a device or socket",
                        ")");
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::StrCat(path, ": ", std::strerror(errno));
  ::close(fd);
  return "";
}

// The first `n` bytes of a readable regular file (fewer if it is shorter).
std::string FirstBytes(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes(n, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(n));
  bytes.resize(static_cast<size_t>(in.gcount()));
  return bytes;
}

bool IsZstd(const std::string& head) {
  return head.size() >= 4 && std::memcmp(head.data(), kZstdMagic, 4) == 0;
}

// What a file that is not zstd looks like, to name it in the message.
std::string DescribeNotZstd(const std::string& path, const std::string& head) {
  if (head.empty()) return absl::StrCat(path, " is empty");
  if (head[0] == '{' || head[0] == '[') {
    return absl::StrCat(path,
                        " is not zstd-compressed: it looks like plain JSON "
                        "Lines; compress it (zstd FILE) and name the "
                        ".jsonl.zst");
  }
  if (head.size() >= 2 && static_cast<unsigned char>(head[0]) == 0x1f &&
      static_cast<unsigned char>(head[1]) == 0x8b) {
    return absl::StrCat(path,
                        " is gzip-compressed, not zstd; recompress it with "
                        "zstd");
  }
  return absl::StrCat(path, " is not zstd-compressed (no zstd frame magic)");
}

bool HasGlob(const std::string& path) {
  return path.find_first_of("*?[") != std::string::npos;
}

// Sorted matches of `pattern` (regular files and links only as glob(3)
// reports them); empty if none.
std::vector<std::string> Glob(const std::string& pattern) {
  glob_t g;
  std::memset(&g, 0, sizeof(g));
  std::vector<std::string> out;
  if (::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.push_back(g.gl_pathv[i]);
  }
  ::globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// The weight files of the teacher directory, or a problem.
std::vector<std::string> WeightFiles(const std::string& dir, Problems* p) {
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  if (WhyUnreadable(single).empty()) return {single};
  if (!WhyUnreadable(index).empty()) {
    p->Add("teacher.path", absl::StrCat(dir,
                                        ": neither model.safetensors nor "
                                        "model.safetensors.index.json exists"));
    return {};
  }
  std::ifstream in(index);
  std::stringstream text;
  text << in.rdbuf();
  Json j = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
      !j["weight_map"].is_object()) {
    p->Add("teacher.path",
           absl::StrCat(index,
                        ": expected a JSON object with a \"weight_map\" "
                        "object"));
    return {};
  }
  std::set<std::string> seen;
  std::vector<std::string> files;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) {
      p->Add("teacher.path", absl::StrCat(index, ": weight_map entry \"", name,
                                          "\" is not a file name"));
      return {};
    }
    if (seen.insert(file.get<std::string>()).second) {
      files.push_back(dir + "/" + file.get<std::string>());
    }
  }
  return files;
}

// Reads every weight file's header and compares the tensors with what
// `config` needs.
void CheckWeights(const std::string& dir, const NeoXConfig& config,
                  Problems* p) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const std::string& file : WeightFiles(dir, p)) {
    if (std::string why = WhyUnreadable(file); !why.empty()) {
      p->Add("teacher.path", why);
      continue;
    }
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
        SafetensorsFile::Open(file);
    if (!f.ok()) {
      p->Add("teacher.path", std::string(f.status().message()));
      continue;
    }
    for (const TensorView& t : (*f)->tensors()) shapes[t.name] = t.shape;
  }
  if (shapes.empty()) return;
  int shown = 0, hidden = 0;
  for (const NeoXTensorShape& want : NeoXTensorShapes(config)) {
    auto it = shapes.find(want.name);
    std::string problem;
    if (it == shapes.end()) {
      problem = absl::StrCat(dir, ": missing tensor \"", want.name, "\"");
    } else if (it->second != want.shape) {
      problem = absl::StrCat(dir, ": tensor \"", want.name, "\" has shape ",
                             ShapeString(it->second), ", config.json needs ",
                             ShapeString(want.shape));
    }
    if (problem.empty()) continue;
    if (shown < kMaxTensorProblems) {
      p->Add("teacher.path", problem);
      ++shown;
    } else {
      ++hidden;
    }
  }
  if (hidden > 0) {
    p->Add("teacher.path",
           absl::StrCat(dir, ": ", hidden,
                        " more tensors are missing or have the wrong shape "
                        "(the weights do not match config.json)"));
  }
}

std::optional<NeoXConfig> CheckTeacher(const std::string& dir, Problems* p) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    p->Add("teacher.path",
           absl::StrCat(dir,
                        " is not a directory (expected an HF directory "
                        "with config.json, *.safetensors, "
                        "tokenizer.json)"));
    return std::nullopt;
  }
  const std::string tokenizer = dir + "/tokenizer.json";
  if (std::string why = WhyUnreadable(tokenizer); !why.empty()) {
    p->Add("teacher.path", why);
  } else {
    const std::string head = FirstBytes(tokenizer, 64);
    if (head.find('{') == std::string::npos) {
      p->Add("teacher.path",
             absl::StrCat(tokenizer,
                          " is not a JSON object (HF tokenizers' "
                          "tokenizer.json)"));
    }
  }
  const std::string config_path = dir + "/config.json";
  if (std::string why = WhyUnreadable(config_path); !why.empty()) {
    p->Add("teacher.path", why);
    return std::nullopt;
  }
  absl::StatusOr<NeoXConfig> config = ReadNeoXConfig(dir);
  if (!config.ok()) {
    p->Add("teacher.path", std::string(config.status().message()));
    return std::nullopt;
  }
  CheckWeights(dir, *config, p);
  return *config;
}

// Expands globs in place; checks each file is zstd.
void CheckJsonlZstPaths(lft::v1::CorpusSpec* corpus, Problems* p) {
  std::vector<std::string> expanded;
  for (int i = 0; i < corpus->jsonl_zst_paths_size(); ++i) {
    const std::string& entry = corpus->jsonl_zst_paths(i);
    const std::string field = absl::StrCat("corpus.jsonl_zst_paths[", i, "]");
    if (entry.empty()) continue;  // ValidateJobSpec reports it
    std::vector<std::string> files = {entry};
    if (HasGlob(entry)) {
      files = Glob(entry);
      if (files.empty()) {
        p->Add(field, absl::StrCat("pattern ", entry, " matches no file"));
        continue;
      }
    }
    for (const std::string& file : files) {
      if (std::string why = WhyUnreadable(file); !why.empty()) {
        p->Add(field, why);
        continue;
      }
      const std::string head = FirstBytes(file, 4);
      if (!IsZstd(head)) {
        p->Add(field, DescribeNotZstd(file, head));
        continue;
      }
      expanded.push_back(file);
    }
  }
  if (!expanded.empty() || corpus->jsonl_zst_paths_size() > 0) {
    corpus->clear_jsonl_zst_paths();
    for (std::string& f : expanded) corpus->add_jsonl_zst_paths(std::move(f));
  }
}

void CheckMegatronPrefixes(const lft::v1::CorpusSpec& corpus, Problems* p) {
  for (int i = 0; i < corpus.megatron_prefixes_size(); ++i) {
    const std::string& prefix = corpus.megatron_prefixes(i);
    const std::string field = absl::StrCat("corpus.megatron_prefixes[", i, "]");
    if (prefix.empty()) continue;
    if (absl::EndsWith(prefix, ".jsonl.zst") ||
        absl::EndsWith(prefix, ".jsonl")) {
      p->Add(field, absl::StrCat(prefix,
                                 " is a JSON Lines file, not a Megatron "
                                 "prefix; list it under jsonl_zst_paths"));
      continue;
    }
    for (const char* ext : {".bin", ".idx"}) {
      const std::string file = prefix + ext;
      if (std::string why = WhyUnreadable(file); !why.empty()) {
        p->Add(field, why);
        continue;
      }
      if (std::string(ext) == ".idx" &&
          FirstBytes(file, 9) != std::string(kMegatronIndexMagic, 9)) {
        p->Add(field, absl::StrCat(file,
                                   " is not a Megatron index (no "
                                   "\"MMIDIDX\" magic)"));
      }
    }
  }
}

void CheckHeldout(const lft::v1::EvaluationSpec& e, Problems* p) {
  for (int i = 0; i < e.heldout_paths_size(); ++i) {
    const std::string& file = e.heldout_paths(i);
    const std::string field = absl::StrCat("evaluation.heldout_paths[", i, "]");
    if (file.empty()) {
      p->Add(field, "is empty");
      continue;
    }
    if (std::string why = WhyUnreadable(file); !why.empty()) {
      p->Add(field, why);
      continue;
    }
    const std::string head = FirstBytes(file, 4);
    if (!IsZstd(head)) p->Add(field, DescribeNotZstd(file, head));
  }
}

}  // namespace

JobInputs CheckJobInputs(lft::v1::JobSpec* spec) {
  JobInputs out;
  Problems p(&out.problems);
  if (!spec->teacher().path().empty()) {
    out.teacher = CheckTeacher(spec->teacher().path(), &p);
  }
  CheckJsonlZstPaths(spec->mutable_corpus(), &p);
  CheckMegatronPrefixes(spec->corpus(), &p);
  CheckHeldout(spec->evaluation(), &p);
  return out;
}

}  // namespace lft
