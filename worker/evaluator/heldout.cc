// Held-out reading; see heldout.h.
#include "worker/evaluator/heldout.h"

#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/corpus/shard_reader.h"

namespace lft {

int64_t HeldOutSet::valid_tokens() const {
  int64_t n = 0;
  for (const PackedSequence& s : sequences) n += s.real_tokens;
  return n;
}

absl::StatusOr<HeldOutSet> ReadHeldOut(const std::vector<std::string>& files,
                                       BpeTokenizer* tokenizer,
                                       const HeldOutOptions& options,
                                       const std::function<bool()>& cancelled) {
  if (files.empty()) {
    return absl::InvalidArgumentError("no held-out files given");
  }
  if (options.sequence_length < 2 || options.max_sequences < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "held-out: sequence_length ", options.sequence_length,
        " must be >= 2 and max_sequences ", options.max_sequences, " >= 1"));
  }
  PackerOptions po;
  po.sequence_length = options.sequence_length;
  po.eos_id = options.eos_id;
  po.pad_id = options.pad_id;
  po.pad_last = true;
  LFT_ASSIGN_OR_RETURN(SequencePacker packer, SequencePacker::Create(po));
  HeldOutSet out;
  out.sequence_length = options.sequence_length;
  out.files = files;
  const size_t want = static_cast<size_t>(options.max_sequences);
  std::vector<int32_t> ids;
  PackedSequence seq;
  for (size_t f = 0; f < files.size() && out.sequences.size() < want; ++f) {
    ShardTask task;
    task.shard_index = static_cast<int64_t>(f);
    task.file = files[f];
    task.first_document = 0;
    task.end_document = std::numeric_limits<int64_t>::max();
    JsonlReaderOptions ro;
    ro.max_errors = options.error_budget;
    auto reader = ShardDocumentReader::Open(task, tokenizer, ro);
    if (!reader.ok()) {
      return Annotate(reader.status(),
                      absl::StrCat("held-out file ", files[f]));
    }
    int64_t doc = 0;
    while (out.sequences.size() < want) {
      if (cancelled && cancelled()) {
        return absl::CancelledError(
            absl::StrCat("reading held-out file ", files[f], ": cancelled"));
      }
      auto more = (*reader)->Next(&ids, &doc);
      if (!more.ok()) {
        return Annotate(more.status(),
                        absl::StrCat("held-out file ", files[f]));
      }
      if (!*more) break;
      ++out.documents;
      packer.AddDocument(ids);
      while (out.sequences.size() < want && packer.Next(&seq)) {
        out.sequences.push_back(std::move(seq));
      }
    }
  }
  if (out.sequences.size() < want && packer.Finish(&seq)) {
    out.sequences.push_back(std::move(seq));
  }
  if (out.sequences.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("held-out files hold no text: ", files.front(),
                     files.size() > 1 ? " ..." : ""));
  }
  return out;
}

}  // namespace lft
