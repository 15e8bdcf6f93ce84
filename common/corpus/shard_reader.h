// Reads the documents of one ShardTask as token ids, whatever the corpus
// format: a *.jsonl.zst file is read with JsonlZstReader and tokenized with
// the given BpeTokenizer; a Megatron dataset (task.file is the prefix) is
// already tokenized. What a teacher worker feeds into SequencePacker.
#ifndef LFT_COMMON_CORPUS_SHARD_READER_H_
#define LFT_COMMON_CORPUS_SHARD_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/corpus/corpus_sharder.h"
#include "common/corpus/indexed_dataset.h"
#include "common/corpus/jsonl_zst.h"
#include "common/text/bpe_tokenizer.h"

namespace lft {

class ShardDocumentReader {
 public:
  // `tokenizer` is required for *.jsonl.zst tasks (InvalidArgument when
  // null) and unused for Megatron ones; it must outlive the reader and is
  // not used concurrently by others (Encode is not thread-safe). Open
  // errors as JsonlZstReader::Open / IndexedDataset::Open; OutOfRange when
  // a Megatron task's range exceeds the dataset.
  static absl::StatusOr<std::unique_ptr<ShardDocumentReader>> Open(
      const ShardTask& task, BpeTokenizer* tokenizer,
      const JsonlReaderOptions& options = {});

  // Replaces *ids with the next document's tokens and sets *document_index
  // (its index in the file). Returns false after the task's last document
  // (or at the end of the file, if it is shorter than the task says).
  // Reader errors as JsonlZstReader::Next.
  absl::StatusOr<bool> Next(std::vector<int32_t>* ids, int64_t* document_index);

  // Bad lines skipped so far (jsonl only; within the error budget).
  const std::vector<JsonlReadError>& errors() const;

 private:
  ShardDocumentReader() = default;
  ShardTask task_;
  BpeTokenizer* tokenizer_ = nullptr;
  std::unique_ptr<JsonlZstReader> jsonl_;
  std::unique_ptr<IndexedDataset> megatron_;
  int64_t next_document_ = 0;  // Megatron cursor
  JsonlDocument doc_;
  std::vector<JsonlReadError> no_errors_;
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_SHARD_READER_H_
