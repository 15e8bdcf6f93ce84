// Pretrains a small GPT-NeoX teacher from scratch, so that lft works end to
// end with no downloaded weights, and saves it as an HF directory
// (config.json, model.safetensors, tokenizer.json) that HF transformers
// loads.
//
// Training: next-token cross-entropy on windows of sequence_length + 1
// tokens drawn (seeded) from one token stream in which documents are joined
// by <|endoftext|>; AdamW (no decay on LayerNorm and biases), linear warm-up
// then cosine decay to 10%, global-norm clipping. Held-out loss is the mean
// token NLL over consecutive windows of the held-out stream (every token
// counted once), reported beside the unigram entropy of the held-out tokens
// under the training unigram distribution (add-one smoothed), the loss of a
// model that ignores context.
#ifndef LFT_WORKER_PRETRAIN_TEACHER_PRETRAINER_H_
#define LFT_WORKER_PRETRAIN_TEACHER_PRETRAINER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/teacher_config.h"

namespace lft {

class BpeTokenizer;

struct PretrainOptions {
  // vocab_size is taken from the tokenizer when 0.
  NeoXConfig config;
  int64_t sequence_length = 128;
  int64_t batch_sequences = 16;
  int64_t max_steps = 1000;
  // A guard, not a budget: training runs max_steps, and stops early only if
  // this much wall-clock time passed first (0 = no limit), which makes the
  // teacher depend on the machine's speed. PretrainReport says so.
  double max_seconds = 0;
  double learning_rate = 1e-3;
  double weight_decay = 0.01;
  int64_t warmup_steps = 50;
  double gradient_clip_norm = 1.0;
  uint64_t seed = 1;
  // Held-out windows evaluated at the end (and every eval_every steps).
  int64_t heldout_sequences = 64;
  int64_t eval_every = 0;
  // "cpu" or "cuda[:N]"; on CUDA matmuls use TF32.
  std::string device = "cpu";
  int num_threads = 0;  // 0 = LibTorch's default
};

struct PretrainProgress {
  int64_t step = 0;
  double train_loss = 0;
  double heldout_loss = -1;  // < 0 when not evaluated at this step
  double seconds = 0;
  double tokens_per_second = 0;
};

struct PretrainReport {
  int64_t steps = 0;
  int64_t tokens_trained = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  int64_t parameters = 0;
  double final_train_loss = 0;
  // nats per token
  double heldout_loss = 0;
  double heldout_perplexity = 0;
  double unigram_entropy = 0;
  int64_t heldout_tokens = 0;
  // True if max_seconds stopped training before max_steps.
  bool stopped_by_time_cap = false;
};

// Tokenizes Pile-format files (`*.jsonl.zst`) into one stream, documents
// joined by `eos_id`, stopping after max_tokens (0 = all). Errors from the
// reader (file and line) are passed through.
absl::StatusOr<std::vector<int32_t>> TokenizeCorpus(
    const std::vector<std::string>& files, BpeTokenizer& tokenizer,
    int32_t eos_id, int64_t max_tokens = 0);

// Trains and writes `out_dir`/{config.json, model.safetensors,
// tokenizer.json}. InvalidArgument for a bad config or streams too short for
// one window; the directory is written only after training succeeds.
absl::StatusOr<PretrainReport> PretrainTeacher(
    const std::vector<int32_t>& train_tokens,
    const std::vector<int32_t>& heldout_tokens, const PretrainOptions& options,
    const std::string& tokenizer_json, const std::string& out_dir,
    const std::function<void(const PretrainProgress&)>& on_progress = {});

}  // namespace lft

#endif  // LFT_WORKER_PRETRAIN_TEACHER_PRETRAINER_H_
