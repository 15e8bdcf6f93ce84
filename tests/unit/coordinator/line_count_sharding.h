// A test oracle for CorpusSharderSharding: counts the lines of each jsonl.zst
// file by streaming it through zstd on its own (no code shared with
// common/corpus) and cuts it into documents_per_shard ranges; Megatron
// prefixes become one whole-file task each (end_document 0).
#ifndef LFT_TESTS_UNIT_COORDINATOR_LINE_COUNT_SHARDING_H_
#define LFT_TESTS_UNIT_COORDINATOR_LINE_COUNT_SHARDING_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/corpus_sharding.h"

namespace lft {

class LineCountSharding : public CorpusSharding {
 public:
  absl::StatusOr<std::vector<lft::v1::ExtractionTask>> Shard(
      const lft::v1::CorpusSpec& corpus) override;
};

// Number of newline-terminated lines in a zstd-compressed file (a final line
// without a newline counts too). NotFound if the file cannot be opened,
// InvalidArgument if it is not valid zstd (with the offset).
absl::StatusOr<uint64_t> CountZstdLines(const std::string& path);

}  // namespace lft

#endif  // LFT_TESTS_UNIT_COORDINATOR_LINE_COUNT_SHARDING_H_
