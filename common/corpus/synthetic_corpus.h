// A synthetic Pile-format corpus for the embedded default (no downloads).
//
// Documents come from five "subsets" (meta.pile_set_name), each built so
// that predicting the next token needs a computation a small transformer
// spreads over its layers:
//   SyntheticEnglish   templated English from a small grammar with entities
//                      introduced and referred back to (agreement, coreference)
//   SyntheticMath      DM-Mathematics-style Q&A: arithmetic, chained
//                      variable substitution, comparisons
//   SyntheticKeyValue  a table of random key = value records, then queries
//                      whose answers must be recalled from the table
//   SyntheticBrackets  bracket sequences with their depth profile and a
//                      balanced/unbalanced verdict
//   SyntheticCode      Python-like code: assignments and arithmetic with the
//                      values printed in comments, nested blocks
// Everything is a pure function of (seed, document index): same seed, same
// bytes. Documents are split by a hash of (seed, index) into val (2%),
// test (2%) and train (round-robin over train_shards files), the layout of
// a Pile-format corpus directory (docs/data.md).
#ifndef LFT_COMMON_CORPUS_SYNTHETIC_CORPUS_H_
#define LFT_COMMON_CORPUS_SYNTHETIC_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lft {

struct SyntheticDocument {
  std::string text;
  std::string pile_set_name;
};

// Document `index` of the corpus with `seed`.
SyntheticDocument MakeSyntheticDocument(uint64_t seed, int64_t index);

// Which split document `index` belongs to: 0 train, 1 val, 2 test.
int SyntheticDocumentSplit(uint64_t seed, int64_t index);

struct SyntheticCorpusOptions {
  uint64_t seed = 1234;
  int64_t documents = 4000;  // about 2.5 KB of text each
  int train_shards = 4;
  int compression_level = 3;
};

struct SyntheticCorpusStats {
  int64_t documents = 0;
  int64_t text_bytes = 0;
  int64_t compressed_bytes = 0;
  std::vector<std::string> files;  // relative to the output directory
};

// Writes DIR/train/NN.jsonl.zst, DIR/val.jsonl.zst, DIR/test.jsonl.zst and
// DIR/MANIFEST.md (creating DIR). InvalidArgument for bad options; I/O
// errors name the file.
absl::StatusOr<SyntheticCorpusStats> WriteSyntheticCorpus(
    const std::string& dir, const SyntheticCorpusOptions& options);

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_SYNTHETIC_CORPUS_H_
