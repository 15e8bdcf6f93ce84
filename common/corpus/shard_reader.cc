#include "common/corpus/shard_reader.h"

#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace lft {

absl::StatusOr<std::unique_ptr<ShardDocumentReader>> ShardDocumentReader::Open(
    const ShardTask& task, BpeTokenizer* tokenizer,
    const JsonlReaderOptions& options) {
  if (task.first_document < 0 || task.end_document < task.first_document) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", task.shard_index, ": bad document range [",
                     task.first_document, ", ", task.end_document, ")"));
  }
  std::unique_ptr<ShardDocumentReader> r(new ShardDocumentReader());
  r->task_ = task;
  r->tokenizer_ = tokenizer;
  if (absl::EndsWith(task.file, ".jsonl.zst")) {
    if (tokenizer == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard ", task.shard_index, ": ", task.file,
                       " is text and needs a tokenizer"));
    }
    LFT_ASSIGN_OR_RETURN(r->jsonl_, JsonlZstReader::Open(task.file, options));
    LFT_RETURN_IF_ERROR(r->jsonl_->SkipTo(task.first_document));
  } else {
    LFT_ASSIGN_OR_RETURN(r->megatron_, IndexedDataset::Open(task.file));
    if (task.end_document > r->megatron_->num_documents()) {
      return absl::OutOfRangeError(
          absl::StrCat("shard ", task.shard_index, ": documents [",
                       task.first_document, ", ", task.end_document, ") but ",
                       task.file, " has ", r->megatron_->num_documents()));
    }
    r->next_document_ = task.first_document;
  }
  return r;
}

absl::StatusOr<bool> ShardDocumentReader::Next(std::vector<int32_t>* ids,
                                               int64_t* document_index) {
  ids->clear();
  if (megatron_ != nullptr) {
    if (next_document_ >= task_.end_document) return false;
    LFT_ASSIGN_OR_RETURN(std::vector<int64_t> tokens,
                         megatron_->Document(next_document_));
    for (int64_t t : tokens) {
      if (t < 0 || t > INT32_MAX) {
        return absl::DataLossError(
            absl::StrCat(task_.file, ": document ", next_document_,
                         " has token id ", t, " outside [0, 2^31)"));
      }
      ids->push_back(static_cast<int32_t>(t));
    }
    *document_index = next_document_++;
    return true;
  }
  // Stop before reading past the range, so a bad line that belongs to the
  // next shard is neither parsed nor counted here.
  if (jsonl_->lines_read() >= task_.end_document) return false;
  LFT_ASSIGN_OR_RETURN(bool got, jsonl_->Next(&doc_));
  if (!got || doc_.index() >= task_.end_document) return false;
  tokenizer_->Encode(doc_.text, ids);
  *document_index = doc_.index();
  return true;
}

const std::vector<JsonlReadError>& ShardDocumentReader::errors() const {
  return jsonl_ != nullptr ? jsonl_->errors() : no_errors_;
}

}  // namespace lft
