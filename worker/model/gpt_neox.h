// GPT-NeoX teacher as in HF transformers' GPTNeoXForCausalLM.
//
// Shapes: ids [B, T] int64; hidden states [B, T, H]; logits [B, T, V].
// Sequences are right-padded: padding sits after the valid tokens, so the
// causal mask alone keeps it from influencing valid positions and every
// position id is its index (as HF does without position_ids). Losses and
// metrics elsewhere take a [B, T] validity mask.
//
// Layer i maps the hidden state entering it (HF hidden_states[i]) to the one
// entering layer i + 1: parallel residual x + attn(ln1(x)) + mlp(ln2(x)), or
// sequential h = x + attn(ln1(x)); h + mlp(ln2(h)). Attention uses partial
// rotary embeddings on the first rotary_dims of each head (cos/sin computed in
// fp32, then cast to the activation dtype, as HF does), softmax in fp32, and
// PyTorch's fused scaled_dot_product_attention on LibTorch >= 2.
//
// The raw tensor functions (RunLayers, NeoXAttention, ...) may throw
// c10::Error on misuse; the StatusOr entry points catch everything.
#ifndef LFT_WORKER_MODEL_GPT_NEOX_H_
#define LFT_WORKER_MODEL_GPT_NEOX_H_

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/base/teacher_config.h"

namespace lft {

class SafetensorsFile;

// Weights of one transformer layer in HF's layout (Linear weights [out, in]).
// Biases of the attention projections are undefined tensors when
// attention_bias is false.
struct NeoXLayerWeights {
  torch::Tensor ln1_w, ln1_b, ln2_w, ln2_b;
  torch::Tensor qkv_w, qkv_b;      // [3H, H]; rows per head interleaved q,k,v
  torch::Tensor dense_w, dense_b;  // [H, H]
  torch::Tensor fc1_w, fc1_b;      // [I, H]
  torch::Tensor fc2_w, fc2_b;      // [H, I]
};

// Keys and values of one layer: [B, heads, T_cached, head_dim].
struct LayerKV {
  torch::Tensor k, v;
};

// Static per-layer shape facts shared by the teacher and the flow layer.
struct NeoXLayerShape {
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t rotary_dims = 0;
  double rotary_base = 10000.0;
  double eps = 1e-5;
  bool parallel = true;
  static NeoXLayerShape FromConfig(const NeoXConfig& c);
};

// Causal self-attention of an already layer-normed input h [B, Tq, H] whose
// first token sits at position `offset`. With `kv`, its keys/values are
// appended to the cache and the query attends to all cached positions.
torch::Tensor NeoXAttention(const NeoXLayerWeights& w, const NeoXLayerShape& s,
                            const torch::Tensor& h, int64_t offset,
                            LayerKV* kv);
// fc2(gelu(fc1(h))) with exact GELU.
torch::Tensor NeoXMlp(const NeoXLayerWeights& w, const torch::Tensor& h);
// One full layer (both residual forms).
torch::Tensor NeoXLayer(const NeoXLayerWeights& w, const NeoXLayerShape& s,
                        const torch::Tensor& x, int64_t offset, LayerKV* kv);

struct NeoXLoadOptions {
  torch::Device device = torch::kCPU;
  // Activation and weight dtype: kFloat or kBFloat16 (kHalf works too).
  torch::ScalarType dtype = torch::kFloat;
};

struct NeoXForwardResult {
  // HF's output_hidden_states: entries 0..L-1 enter layers 0..L-1, entry L
  // is the last layer's output after the final LayerNorm.
  std::vector<torch::Tensor> hidden_states;
  torch::Tensor logits;  // [B, T, V] float32
};

struct NeoXGenerateOptions {
  int64_t max_new_tokens = 16;
  double temperature = 0.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // 0: whole vocabulary
  uint64_t seed = 0;
  bool use_cache = true;
};

class GptNeoX {
 public:
  // Loads an HF directory: config.json plus model.safetensors, or
  // model.safetensors.index.json with its shards. Weights whose dtype and
  // device already match are views into the mapped file (no copy).
  // NotFound if config.json / a weight file / a tensor is missing;
  // InvalidArgument for a bad config field or a tensor of the wrong shape or
  // dtype. Every message names the file and field or tensor.
  static absl::StatusOr<std::unique_ptr<GptNeoX>> Load(
      const std::string& dir, const NeoXLoadOptions& options = {});
  // Builds from named HF tensors (same validation as Load).
  static absl::StatusOr<std::unique_ptr<GptNeoX>> FromTensors(
      const NeoXConfig& config, const std::map<std::string, torch::Tensor>& t,
      const NeoXLoadOptions& options = {},
      const std::string& label = "<tensors>");
  // Random HF-named weights (normal std 0.02 like HF init, LayerNorm weights
  // near 1 and biases small but non-zero so tests exercise every term).
  static std::map<std::string, torch::Tensor> RandomTensors(
      const NeoXConfig& config, uint64_t seed);

  const NeoXConfig& config() const { return config_; }
  const NeoXLayerShape& layer_shape() const { return shape_; }
  const NeoXLayerWeights& layer(int64_t i) const { return layers_[i]; }
  const NeoXLoadOptions& options() const { return options_; }
  const torch::Tensor& embed_in() const { return embed_in_; }
  const torch::Tensor& final_ln_weight() const { return final_ln_w_; }
  const torch::Tensor& final_ln_bias() const { return final_ln_b_; }
  const torch::Tensor& embed_out() const { return embed_out_; }

  // --- Raw tensor API (may throw c10::Error) ---
  torch::Tensor Embed(const torch::Tensor& ids) const;
  // Runs layers [begin, end) on x entering `begin`; with `cache` (sized to
  // num_hidden_layers) keys/values are appended and positions continue after
  // the cached length.
  torch::Tensor RunLayers(torch::Tensor x, int64_t begin, int64_t end,
                          int64_t offset = 0,
                          std::vector<LayerKV>* cache = nullptr) const;
  // Final LayerNorm + LM head; returns float32 logits.
  torch::Tensor Head(const torch::Tensor& x) const;

  // --- Status entry points ---
  // Extraction mode: runs layers 0..n-1 only and returns {hidden_states[m],
  // hidden_states[n]}; no logits. InvalidArgument unless 0 <= m < n <= L and
  // ids is a [B, T] integer tensor with ids in the vocabulary.
  absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> Extract(
      const torch::Tensor& ids, int64_t m, int64_t n) const;
  // Tail mode: x entering layer n -> layers n..L-1, final LN, head ->
  // float32 logits. InvalidArgument unless 0 <= n <= L and x is [B, T, H].
  absl::StatusOr<torch::Tensor> Tail(const torch::Tensor& x, int64_t n) const;
  // Full forward with every hidden state.
  absl::StatusOr<NeoXForwardResult> Forward(const torch::Tensor& ids) const;
  // Generates max_new_tokens after ids [B, T]; returns [B, T + new] int64 on
  // CPU. With use_cache false every step recomputes the whole prefix (the
  // reference for the cache). Sampling uses a std::mt19937_64 seeded with
  // `seed`, so results are reproducible across devices.
  absl::StatusOr<torch::Tensor> Generate(
      const torch::Tensor& ids, const NeoXGenerateOptions& options) const;

 private:
  GptNeoX() = default;
  absl::Status CheckIds(const torch::Tensor& ids) const;

  NeoXConfig config_;
  NeoXLayerShape shape_;
  NeoXLoadOptions options_;
  torch::Tensor embed_in_, final_ln_w_, final_ln_b_, embed_out_;
  std::vector<NeoXLayerWeights> layers_;
  // Keeps mmap'd files alive while zero-copy weights point into them.
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
};

}  // namespace lft

#endif  // LFT_WORKER_MODEL_GPT_NEOX_H_
