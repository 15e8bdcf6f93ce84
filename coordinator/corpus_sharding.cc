#include "coordinator/corpus_sharding.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/corpus/corpus_sharder.h"

namespace lft {

absl::StatusOr<std::vector<lft::v1::ExtractionTask>>
CorpusSharderSharding::Shard(const lft::v1::CorpusSpec& corpus) {
  const int64_t per_shard = corpus.documents_per_shard() > 0
                                ? corpus.documents_per_shard()
                                : kDefaultDocumentsPerShard;
  std::vector<CorpusFile> files;
  auto count = [&](const std::string& path,
                   const std::string& field) -> absl::Status {
    absl::StatusOr<std::vector<CorpusFile>> f =
        CorpusSharder::CountDocuments({path});
    if (!f.ok()) {
      return absl::Status(f.status().code(),
                          absl::StrCat(field, ": ", f.status().message()));
    }
    files.insert(files.end(), f->begin(), f->end());
    return absl::OkStatus();
  };
  for (int i = 0; i < corpus.jsonl_zst_paths_size(); ++i) {
    absl::Status s = count(corpus.jsonl_zst_paths(i),
                           absl::StrCat("corpus.jsonl_zst_paths[", i, "]"));
    if (!s.ok()) return s;
  }
  for (int i = 0; i < corpus.megatron_prefixes_size(); ++i) {
    absl::Status s = count(corpus.megatron_prefixes(i),
                           absl::StrCat("corpus.megatron_prefixes[", i, "]"));
    if (!s.ok()) return s;
  }
  absl::StatusOr<std::vector<ShardTask>> shards =
      CorpusSharder::MakeShards(files, per_shard);
  if (!shards.ok()) return shards.status();
  std::vector<lft::v1::ExtractionTask> tasks;
  tasks.reserve(shards->size());
  for (const ShardTask& st : *shards) {
    lft::v1::ExtractionTask t;
    t.set_corpus_path(st.file);
    t.set_first_document(static_cast<uint64_t>(st.first_document));
    t.set_end_document(static_cast<uint64_t>(st.end_document));
    t.set_shard_index(static_cast<uint32_t>(st.shard_index));
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) {
    return absl::InvalidArgumentError(
        "corpus: the named files hold no documents; nothing to extract");
  }
  return tasks;
}

}  // namespace lft
