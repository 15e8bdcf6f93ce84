// Submit-time checks of the files a JobSpec names, as this process sees
// them: the teacher directory (config.json parsed, tokenizer.json present,
// every weight file's safetensors header read and each tensor's shape
// compared with the config, without loading a weight), the corpus files
// (present, regular, readable, of the format their field says) and the
// held-out files. Globs in corpus.jsonl_zst_paths are expanded here, as
// job.proto promises. JobSpec's own rules (bounds, enums, names) are
// ValidateJobSpec's (common/base/job_spec.h); the coordinator reports both
// lists at once.
//
// Reads only headers and first bytes; never opens a file that is not a
// regular file (a FIFO would block). Thread-safe (no shared state).
#ifndef LFT_COORDINATOR_JOB_INPUTS_H_
#define LFT_COORDINATOR_JOB_INPUTS_H_

#include <optional>
#include <vector>

#include "common/base/job_spec.h"
#include "common/base/teacher_config.h"
#include "lft/v1/job.pb.h"

namespace lft {

struct JobInputs {
  // The teacher's config.json, when it was read and parsed.
  std::optional<NeoXConfig> teacher;
  // Every problem found, with its field path ("teacher.path",
  // "corpus.jsonl_zst_paths[1]", "evaluation.heldout_paths[0]").
  std::vector<SpecProblem> problems;
};

// Checks the inputs of `spec` (a compress job, defaults applied) and
// replaces each glob in spec->corpus().jsonl_zst_paths() by its matches in
// sorted order. A glob matching nothing is a problem; so is a path whose
// format differs from its field's (a plain .jsonl under jsonl_zst_paths, a
// .jsonl.zst under megatron_prefixes). At most kMaxTensorProblems tensor
// mismatches are listed, then a count of the rest.
JobInputs CheckJobInputs(lft::v1::JobSpec* spec);

inline constexpr int kMaxTensorProblems = 8;

}  // namespace lft

#endif  // LFT_COORDINATOR_JOB_INPUTS_H_
