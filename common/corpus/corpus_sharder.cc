#include "common/corpus/corpus_sharder.h"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/corpus/indexed_dataset.h"
#include "common/corpus/jsonl_zst.h"

namespace lft {

absl::StatusOr<std::vector<std::string>> ListJsonlZstFiles(
    const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("corpus directory ", dir, " does not exist"));
  }
  std::vector<std::string> out;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        absl::EndsWith(it->path().filename().string(), ".jsonl.zst")) {
      out.push_back(it->path().string());
    }
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no *.jsonl.zst file under ", dir));
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<CorpusFile>> CorpusSharder::CountDocuments(
    const std::vector<std::string>& paths) {
  std::vector<CorpusFile> files;
  files.reserve(paths.size());
  for (const std::string& path : paths) {
    CorpusFile f;
    f.path = path;
    if (absl::EndsWith(path, ".jsonl.zst")) {
      LFT_ASSIGN_OR_RETURN(f.documents, CountJsonlZstLines(path));
    } else {
      LFT_ASSIGN_OR_RETURN(auto ds, IndexedDataset::Open(path));
      f.documents = ds->num_documents();
    }
    files.push_back(std::move(f));
  }
  return files;
}

absl::StatusOr<std::vector<ShardTask>> CorpusSharder::MakeShards(
    const std::vector<CorpusFile>& files, int64_t documents_per_shard) {
  if (documents_per_shard < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "documents_per_shard = ", documents_per_shard, ", expected >= 1"));
  }
  std::vector<ShardTask> tasks;
  for (const CorpusFile& f : files) {
    if (f.documents < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.path, ": negative document count ", f.documents));
    }
    for (int64_t first = 0; first < f.documents; first += documents_per_shard) {
      ShardTask t;
      t.shard_index = static_cast<int64_t>(tasks.size());
      t.file = f.path;
      t.first_document = first;
      t.end_document = std::min(f.documents, first + documents_per_shard);
      tasks.push_back(std::move(t));
    }
  }
  return tasks;
}

}  // namespace lft
