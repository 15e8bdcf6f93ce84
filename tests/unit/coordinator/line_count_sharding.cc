#include "tests/unit/coordinator/line_count_sharding.h"

#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace lft {

absl::StatusOr<uint64_t> CountZstdLines(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"),
                                          &std::fclose);
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("corpus file ", path, ": ", std::strerror(errno)));
  }
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                          &ZSTD_freeDCtx);
  std::vector<char> in(ZSTD_DStreamInSize());
  std::vector<char> out(ZSTD_DStreamOutSize());
  uint64_t lines = 0;
  uint64_t offset = 0;
  bool last_was_newline = true;
  bool any_output = false;
  size_t last_ret = 0;
  while (true) {
    const size_t n = std::fread(in.data(), 1, in.size(), f.get());
    if (n == 0) break;
    ZSTD_inBuffer input{in.data(), n, 0};
    while (input.pos < input.size) {
      ZSTD_outBuffer output{out.data(), out.size(), 0};
      last_ret = ZSTD_decompressStream(dctx.get(), &output, &input);
      if (ZSTD_isError(last_ret)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "corpus file ", path, " is not valid zstd near compressed byte ",
            offset + input.pos, ": ", ZSTD_getErrorName(last_ret)));
      }
      const char* p = out.data();
      if (output.pos > 0) {
        any_output = true;
        lines += std::count(p, p + output.pos, '\n');
        last_was_newline = p[output.pos - 1] == '\n';
      }
    }
    offset += n;
  }
  if (last_ret != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "corpus file ", path, " is truncated (zstd frame incomplete)"));
  }
  if (any_output && !last_was_newline) ++lines;
  return lines;
}

absl::StatusOr<std::vector<lft::v1::ExtractionTask>> LineCountSharding::Shard(
    const lft::v1::CorpusSpec& corpus) {
  const uint64_t per_shard = corpus.documents_per_shard() > 0
                                 ? corpus.documents_per_shard()
                                 : kDefaultDocumentsPerShard;
  std::vector<lft::v1::ExtractionTask> tasks;
  for (int i = 0; i < corpus.jsonl_zst_paths_size(); ++i) {
    const std::string& path = corpus.jsonl_zst_paths(i);
    absl::StatusOr<uint64_t> lines = CountZstdLines(path);
    if (!lines.ok()) {
      return absl::Status(lines.status().code(),
                          absl::StrCat("corpus.jsonl_zst_paths[", i,
                                       "]: ", lines.status().message()));
    }
    for (uint64_t first = 0; first < *lines; first += per_shard) {
      lft::v1::ExtractionTask t;
      t.set_corpus_path(path);
      t.set_first_document(first);
      t.set_end_document(std::min(*lines, first + per_shard));
      t.set_shard_index(static_cast<uint32_t>(tasks.size()));
      tasks.push_back(std::move(t));
    }
  }
  for (const std::string& prefix : corpus.megatron_prefixes()) {
    lft::v1::ExtractionTask t;
    t.set_corpus_path(prefix);
    t.set_shard_index(static_cast<uint32_t>(tasks.size()));
    tasks.push_back(std::move(t));
  }
  if (tasks.empty()) {
    return absl::InvalidArgumentError(
        "corpus: the named files hold no documents; nothing to extract");
  }
  return tasks;
}

}  // namespace lft
