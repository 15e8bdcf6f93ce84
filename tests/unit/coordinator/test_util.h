// Helpers shared by the coordinator's unit tests.
#ifndef LFT_TESTS_UNIT_COORDINATOR_TEST_UTIL_H_
#define LFT_TESTS_UNIT_COORDINATOR_TEST_UTIL_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/corpus_sharding.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lft/v1/job.pb.h"
#include "tests/testing/status_matchers.h"

namespace lft {

// The project-wide matcher (tests/testing/status_matchers.h).
using ::lft::testing::StatusIs;

// A fresh directory under TMPDIR, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "lft-coord-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Shards every corpus into `shards` tasks of `docs` documents each.
class FakeSharding : public CorpusSharding {
 public:
  FakeSharding(int shards, uint64_t docs) : shards_(shards), docs_(docs) {}
  absl::StatusOr<std::vector<lft::v1::ExtractionTask>> Shard(
      const lft::v1::CorpusSpec& corpus) override {
    if (!error.ok()) return error;
    std::vector<lft::v1::ExtractionTask> out;
    for (int i = 0; i < shards_; ++i) {
      lft::v1::ExtractionTask t;
      t.set_corpus_path(corpus.jsonl_zst_paths(0));
      t.set_first_document(i * docs_);
      t.set_end_document((i + 1) * docs_);
      t.set_shard_index(i);
      out.push_back(t);
    }
    return out;
  }
  absl::Status error;

 private:
  const int shards_;
  const uint64_t docs_;
};

// A spec that validates once defaults are applied.
inline lft::v1::JobSpec ValidSpec(
    const std::string& teacher = "/nonexistent/teacher") {
  lft::v1::JobSpec spec;
  spec.set_name("test-job");
  spec.mutable_teacher()->set_path(teacher);
  spec.mutable_corpus()->add_jsonl_zst_paths("/data/pile-00.jsonl.zst");
  spec.mutable_block()->set_first_layer(2);
  spec.mutable_block()->set_end_layer(4);
  spec.mutable_training()->set_max_steps(20);
  spec.mutable_training()->set_checkpoint_every_steps(5);
  spec.mutable_evaluation()->set_max_sequences(8);
  spec.mutable_evaluation()->add_heldout_paths("/data/pile-val.jsonl.zst");
  return spec;
}

}  // namespace lft

#endif  // LFT_TESTS_UNIT_COORDINATOR_TEST_UTIL_H_
