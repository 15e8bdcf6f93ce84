// Deterministic sharding of a corpus into tasks a coordinator hands out (the
// coordinator's leases account for each task exactly once).
//
// A ShardTask is a document range [first_document, end_document) of one
// file, where a document is a line of a *.jsonl.zst file (see
// common/corpus/jsonl_zst.h: its 0-based line index) or a document of a
// Megatron dataset (file = the path prefix without .bin/.idx). The same files
// and documents_per_shard always give the same tasks, so a restarted
// coordinator re-derives identical shard indices.
#ifndef LFT_COMMON_CORPUS_CORPUS_SHARDER_H_
#define LFT_COMMON_CORPUS_CORPUS_SHARDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

struct ShardTask {
  int64_t shard_index = 0;
  std::string file;
  int64_t first_document = 0;
  int64_t end_document = 0;  // exclusive
  int64_t documents() const { return end_document - first_document; }
  bool operator==(const ShardTask& o) const {
    return shard_index == o.shard_index && file == o.file &&
           first_document == o.first_document && end_document == o.end_document;
  }
};

struct CorpusFile {
  std::string path;
  int64_t documents = 0;
};

// The *.jsonl.zst files under `dir` (recursively), sorted by path. NotFound
// when `dir` does not exist; InvalidArgument when it holds no such file.
absl::StatusOr<std::vector<std::string>> ListJsonlZstFiles(
    const std::string& dir);

class CorpusSharder {
 public:
  // The counting pass: documents per file. A path ending in .jsonl.zst is
  // decompressed and its lines counted; any other path is taken as a
  // Megatron prefix (path.idx / path.bin). Errors name the file (DataLoss
  // for corrupt data, NotFound for a missing file).
  static absl::StatusOr<std::vector<CorpusFile>> CountDocuments(
      const std::vector<std::string>& paths);

  // Splits each file into consecutive ranges of documents_per_shard
  // documents (the last range of a file may be shorter; shards never span
  // files; empty files yield no shard), numbering shards 0, 1, ... in the
  // given file order. InvalidArgument when documents_per_shard < 1 or a
  // count is negative.
  static absl::StatusOr<std::vector<ShardTask>> MakeShards(
      const std::vector<CorpusFile>& files, int64_t documents_per_shard);
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_CORPUS_SHARDER_H_
