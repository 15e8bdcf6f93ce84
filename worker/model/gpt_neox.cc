// GPT-NeoX forward passes; see gpt_neox.h for the shapes and conventions.
#include "worker/model/gpt_neox.h"

#include <torch/version.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/tensor/safetensors.h"
#include "nlohmann/json.hpp"
#include "worker/kernels/fused_ops.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

torch::Tensor MaybeBias(const torch::Tensor& b) { return b; }

// x [.., in] @ w^T + b as one addmm on the flattened rows, so that on the
// GPU cuBLASLt adds the bias in the GEMM's epilogue. LibTorch 2.11's
// linear() ran these layers as mm plus a separate broadcast add_ of the
// bias, a non-vectorised pass over the output that cost ~100 us per call at
// 8 x 2048 x 1024 (docs/benchmarks.md). On the CPU, LibTorch 1.13's
// linear() already takes this addmm for a contiguous 3-D float input (the
// same bits, and CPU tests run this path); other CPU inputs keep linear(),
// whose bf16 and strided forms round differently. Under autograd on the GPU
// BiasLinear (worker/kernels/fused_ops.h) also sums the bias gradient in
// its own kernel.
torch::Tensor Linear(const torch::Tensor& x, const torch::Tensor& w,
                     const torch::Tensor& b) {
  const bool cpu_same_bits =
      x.dim() == 3 && x.is_contiguous() &&
      (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kDouble);
  if (!b.defined() || x.dim() < 3 || !(x.is_cuda() || cpu_same_bits)) {
    return torch::nn::functional::linear(x, w, b);
  }
  std::vector<int64_t> shape = x.sizes().vec();
  const int64_t in = shape.back();
  shape.back() = w.size(0);
  return BiasLinear(x.contiguous().view({-1, in}), w, b).view(shape);
}

}  // namespace

NeoXLayerShape NeoXLayerShape::FromConfig(const NeoXConfig& c) {
  NeoXLayerShape s;
  s.hidden = c.hidden_size;
  s.heads = c.num_attention_heads;
  s.rotary_dims = c.rotary_dims();
  s.rotary_base = c.rotary_emb_base;
  s.eps = c.layer_norm_eps;
  s.parallel = c.use_parallel_residual;
  return s;
}

namespace {

// cos and sin [T, rot] of the rotary angles for positions offset..offset+T,
// in x's dtype. Every layer of a forward asks for the same table, so the
// last one is kept per thread (the values depend only on the key).
std::pair<torch::Tensor, torch::Tensor> RotaryTable(const NeoXLayerShape& s,
                                                    const torch::Tensor& x,
                                                    int64_t offset, int64_t t) {
  struct Cached {
    torch::Device device = torch::kCPU;
    torch::ScalarType dtype = torch::kFloat;
    int64_t offset = -1, t = -1, rot = -1;
    double base = 0;
    torch::Tensor cos, sin;
  };
  thread_local Cached cached;
  if (cached.cos.defined() && cached.device == x.device() &&
      cached.dtype == x.scalar_type() && cached.offset == offset &&
      cached.t == t && cached.rot == s.rotary_dims &&
      cached.base == s.rotary_base) {
    return {cached.cos, cached.sin};
  }
  torch::NoGradGuard no_grad;
  // HF computes the angles in fp32; fp64 inputs (gradient checks) keep fp64.
  const auto angle_type =
      x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  auto f32 = torch::TensorOptions().dtype(angle_type).device(x.device());
  torch::Tensor inv_freq =
      1.0 / torch::pow(s.rotary_base, torch::arange(0, s.rotary_dims, 2, f32) /
                                          static_cast<double>(s.rotary_dims));
  torch::Tensor pos = torch::arange(offset, offset + t, f32);
  torch::Tensor freqs = torch::outer(pos, inv_freq);  // [T, rot/2]
  torch::Tensor emb = torch::cat({freqs, freqs}, -1);
  cached = Cached{x.device(),
                  x.scalar_type(),
                  offset,
                  t,
                  s.rotary_dims,
                  s.rotary_base,
                  emb.cos().to(x.scalar_type()),
                  emb.sin().to(x.scalar_type())};
  return {cached.cos, cached.sin};
}

// Rotates the first `rot` dims of q and k inside qkv [B, T, heads, 3, hd]
// in place (no autograd): only a quarter of q and k is touched, where
// ApplyRotary reads and rewrites all of both. Same operations in the same
// order as HF's x * cos + rotate_half(x) * sin, so the same bits.
void ApplyRotaryInPlace(const torch::Tensor& qkv5, const torch::Tensor& cos,
                        const torch::Tensor& sin, int64_t rot) {
  const int64_t half = rot / 2, t = qkv5.size(1);
  torch::Tensor r = qkv5.narrow(3, 0, 2).narrow(4, 0, rot);  // [B,T,H,2,rot]
  torch::Tensor x1 = r.narrow(-1, 0, half), x2 = r.narrow(-1, half, half);
  torch::Tensor c = cos.narrow(-1, 0, half).view({1, t, 1, 1, half});
  torch::Tensor sn = sin.narrow(-1, 0, half).view({1, t, 1, 1, half});
  torch::Tensor first = x1 * c - x2 * sn;
  torch::Tensor second = x2 * c + x1 * sn;
  x1.copy_(first);
  x2.copy_(second);
}

}  // namespace

torch::Tensor NeoXAttention(const NeoXLayerWeights& w, const NeoXLayerShape& s,
                            const torch::Tensor& h, int64_t offset,
                            LayerKV* kv) {
  const int64_t b = h.size(0), t = h.size(1);
  const int64_t hd = s.hidden / s.heads;
  torch::Tensor qkv = Linear(h, w.qkv_w, MaybeBias(w.qkv_b));
  // HF layout: per head [q(hd), k(hd), v(hd)].
  torch::Tensor q, k, v;
  if (!torch::GradMode::is_enabled() && s.rotary_dims > 1) {
    torch::Tensor qkv5 = qkv.view({b, t, s.heads, 3, hd});
    auto [cos, sin] = RotaryTable(s, h, offset, t);
    ApplyRotaryInPlace(qkv5, cos, sin, s.rotary_dims);
    q = qkv5.select(3, 0).permute({0, 2, 1, 3});
    k = qkv5.select(3, 1).permute({0, 2, 1, 3});
    v = qkv5.select(3, 2).permute({0, 2, 1, 3});
  } else {
    // With autograd: one split into q, k, v (rotated), whose backward is
    // one tensor, where narrow and select would each add a zero-filled
    // tensor of qkv's size and a copy.
    torch::Tensor cos, sin;
    if (s.rotary_dims > 0) std::tie(cos, sin) = RotaryTable(s, h, offset, t);
    std::vector<torch::Tensor> heads = SplitQkvHeads(
        qkv.view({b, t, s.heads, 3, hd}), cos, sin, s.rotary_dims);
    q = heads[0].permute({0, 2, 1, 3});
    k = heads[1].permute({0, 2, 1, 3});
    v = heads[2].permute({0, 2, 1, 3});
  }
  if (kv != nullptr) {
    if (kv->k.defined()) {
      k = torch::cat({kv->k, k}, 2);
      v = torch::cat({kv->v, v}, 2);
    }
    kv->k = k;
    kv->v = v;
  }
  const int64_t tk = k.size(2);
  torch::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  if (tk == t) {
    out =
        at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  } else if (t == 1) {
    out =
        at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/false);
  }
#endif
  if (!out.defined()) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    const auto score_type =
        q.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    torch::Tensor scores =
        torch::matmul(q, k.transpose(-1, -2)).to(score_type) * scale;
    // Query i (absolute position tk - t + i) sees keys j <= that position.
    auto iopt = torch::TensorOptions().dtype(torch::kLong).device(h.device());
    torch::Tensor qi = torch::arange(tk - t, tk, iopt).unsqueeze(1);
    torch::Tensor kj = torch::arange(0, tk, iopt).unsqueeze(0);
    scores =
        scores.masked_fill(kj > qi, -std::numeric_limits<double>::infinity());
    torch::Tensor probs = torch::softmax(scores, -1).to(v.scalar_type());
    out = torch::matmul(probs, v);
  }
  out = out.permute({0, 2, 1, 3}).reshape({b, t, s.hidden});
  return Linear(out, w.dense_w, MaybeBias(w.dense_b));
}

torch::Tensor NeoXMlp(const NeoXLayerWeights& w, const torch::Tensor& h) {
  torch::Tensor a = torch::gelu(Linear(h, w.fc1_w, w.fc1_b));
  return Linear(a, w.fc2_w, w.fc2_b);
}

torch::Tensor NeoXLayer(const NeoXLayerWeights& w, const NeoXLayerShape& s,
                        const torch::Tensor& x, int64_t offset, LayerKV* kv) {
  torch::Tensor attn = NeoXAttention(
      w, s, torch::layer_norm(x, {s.hidden}, w.ln1_w, w.ln1_b, s.eps), offset,
      kv);
  if (s.parallel) {
    torch::Tensor mlp =
        NeoXMlp(w, torch::layer_norm(x, {s.hidden}, w.ln2_w, w.ln2_b, s.eps));
    return mlp + attn + x;
  }
  torch::Tensor h = attn + x;
  return NeoXMlp(w, torch::layer_norm(h, {s.hidden}, w.ln2_w, w.ln2_b, s.eps)) +
         h;
}

namespace {

absl::StatusOr<torch::ScalarType> ToTorchDType(DType d,
                                               absl::string_view what) {
  switch (d) {
    case DType::kF32:
      return torch::kFloat;
    case DType::kBF16:
      return torch::kBFloat16;
    case DType::kF16:
      return torch::kHalf;
    case DType::kF64:
      return torch::kDouble;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": dtype ", DTypeName(d), " is not a float type"));
  }
}

// Looks a tensor up, checks its shape and converts it to the target dtype and
// device (zero-copy when nothing changes).
class TensorSource {
 public:
  TensorSource(const std::map<std::string, torch::Tensor>& t, std::string label,
               const NeoXLoadOptions& o)
      : tensors_(t), label_(std::move(label)), options_(o) {}

  bool Contains(const std::string& name) const {
    return tensors_.count(name) > 0;
  }

  absl::StatusOr<torch::Tensor> Get(const std::string& name,
                                    std::vector<int64_t> shape) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      return absl::NotFoundError(
          absl::StrCat(label_, ": missing tensor \"", name, "\""));
    }
    const torch::Tensor& t = it->second;
    if (t.sizes().vec() != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          label_, ": tensor \"", name, "\" has shape ",
          ShapeStr(t.sizes().vec()), ", expected ", ShapeStr(shape)));
    }
    if (!t.is_floating_point()) {
      return absl::InvalidArgumentError(absl::StrCat(
          label_, ": tensor \"", name, "\" is not floating point"));
    }
    return t.to(options_.device, options_.dtype);
  }

  static std::string ShapeStr(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i)
      absl::StrAppend(&r, i ? ", " : "", s[i]);
    return r + "]";
  }

 private:
  const std::map<std::string, torch::Tensor>& tensors_;
  std::string label_;
  NeoXLoadOptions options_;
};

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

}  // namespace

absl::StatusOr<std::unique_ptr<GptNeoX>> GptNeoX::Load(
    const std::string& dir, const NeoXLoadOptions& options) {
  LFT_ASSIGN_OR_RETURN(NeoXConfig config, ReadNeoXConfig(dir));
  std::vector<std::string> files;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  std::string label = single;
  if (FileExists(single)) {
    files.push_back(single);
  } else if (FileExists(index)) {
    label = index;
    LFT_ASSIGN_OR_RETURN(std::string text, ReadText(index));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          index, ": expected an object with a \"weight_map\" object"));
    }
    std::set<std::string> seen;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index, ": weight_map entry \"", name, "\" is not a file name"));
      }
      if (seen.insert(file.get<std::string>()).second) {
        files.push_back(dir + "/" + file.get<std::string>());
      }
    }
  } else {
    return absl::NotFoundError(absl::StrCat(
        dir,
        ": neither model.safetensors nor model.safetensors.index.json exists"));
  }
  return GuardTorch(
      "GptNeoX::Load", [&]() -> absl::StatusOr<std::unique_ptr<GptNeoX>> {
        std::map<std::string, torch::Tensor> tensors;
        std::vector<std::shared_ptr<SafetensorsFile>> held;
        for (const std::string& f : files) {
          LFT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> up,
                               SafetensorsFile::Open(f));
          std::shared_ptr<SafetensorsFile> file(std::move(up));
          held.push_back(file);
          for (const TensorView& view : file->tensors()) {
            auto dt = ToTorchDType(
                view.dtype, absl::StrCat(f, ": tensor \"", view.name, "\""));
            if (!dt.ok())
              continue;  // integer buffers are not weights; skip them
            const size_t esize = DTypeSize(view.dtype);
            void* ptr = const_cast<uint8_t*>(view.data.data());
            torch::Tensor t;
            if (view.NumElements() == 0) {
              t = torch::empty(view.shape, torch::TensorOptions().dtype(*dt));
            } else if (reinterpret_cast<uintptr_t>(ptr) % esize == 0) {
              // The deleter keeps the file's bytes alive as long as the tensor.
              t = torch::from_blob(
                  ptr, view.shape, [file](void*) {},
                  torch::TensorOptions().dtype(*dt));
            } else {
              t = torch::empty(view.shape, torch::TensorOptions().dtype(*dt));
              std::memcpy(t.data_ptr(), ptr, view.data.size());
            }
            tensors[view.name] = t;
          }
        }
        LFT_ASSIGN_OR_RETURN(std::unique_ptr<GptNeoX> model,
                             FromTensors(config, tensors, options, label));
        model->files_ = std::move(held);
        return model;
      });
}

absl::StatusOr<std::unique_ptr<GptNeoX>> GptNeoX::FromTensors(
    const NeoXConfig& config, const std::map<std::string, torch::Tensor>& t,
    const NeoXLoadOptions& options, const std::string& label) {
  return GuardTorch(
      "GptNeoX::FromTensors",
      [&]() -> absl::StatusOr<std::unique_ptr<GptNeoX>> {
        std::unique_ptr<GptNeoX> m(new GptNeoX());
        m->config_ = config;
        m->shape_ = NeoXLayerShape::FromConfig(config);
        m->options_ = options;
        TensorSource src(t, label, options);
        const int64_t h = config.hidden_size, v = config.vocab_size,
                      in = config.intermediate_size;
        LFT_ASSIGN_OR_RETURN(m->embed_in_,
                             src.Get("gpt_neox.embed_in.weight", {v, h}));
        LFT_ASSIGN_OR_RETURN(m->final_ln_w_,
                             src.Get("gpt_neox.final_layer_norm.weight", {h}));
        LFT_ASSIGN_OR_RETURN(m->final_ln_b_,
                             src.Get("gpt_neox.final_layer_norm.bias", {h}));
        if (config.tie_word_embeddings) {
          m->embed_out_ = m->embed_in_;
        } else {
          LFT_ASSIGN_OR_RETURN(m->embed_out_,
                               src.Get("embed_out.weight", {v, h}));
        }
        for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
          const std::string p = absl::StrCat("gpt_neox.layers.", i, ".");
          NeoXLayerWeights w;
          LFT_ASSIGN_OR_RETURN(w.ln1_w,
                               src.Get(p + "input_layernorm.weight", {h}));
          LFT_ASSIGN_OR_RETURN(w.ln1_b,
                               src.Get(p + "input_layernorm.bias", {h}));
          LFT_ASSIGN_OR_RETURN(
              w.ln2_w, src.Get(p + "post_attention_layernorm.weight", {h}));
          LFT_ASSIGN_OR_RETURN(
              w.ln2_b, src.Get(p + "post_attention_layernorm.bias", {h}));
          LFT_ASSIGN_OR_RETURN(
              w.qkv_w,
              src.Get(p + "attention.query_key_value.weight", {3 * h, h}));
          LFT_ASSIGN_OR_RETURN(w.dense_w,
                               src.Get(p + "attention.dense.weight", {h, h}));
          if (config.attention_bias) {
            LFT_ASSIGN_OR_RETURN(
                w.qkv_b,
                src.Get(p + "attention.query_key_value.bias", {3 * h}));
            LFT_ASSIGN_OR_RETURN(w.dense_b,
                                 src.Get(p + "attention.dense.bias", {h}));
          }
          LFT_ASSIGN_OR_RETURN(
              w.fc1_w, src.Get(p + "mlp.dense_h_to_4h.weight", {in, h}));
          LFT_ASSIGN_OR_RETURN(w.fc1_b,
                               src.Get(p + "mlp.dense_h_to_4h.bias", {in}));
          LFT_ASSIGN_OR_RETURN(
              w.fc2_w, src.Get(p + "mlp.dense_4h_to_h.weight", {h, in}));
          LFT_ASSIGN_OR_RETURN(w.fc2_b,
                               src.Get(p + "mlp.dense_4h_to_h.bias", {h}));
          m->layers_.push_back(std::move(w));
        }
        return m;
      });
}

std::map<std::string, torch::Tensor> GptNeoX::RandomTensors(const NeoXConfig& c,
                                                            uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  auto normal = [&](std::vector<int64_t> shape, double mean, double std) {
    return at::normal(mean, std, shape, gen);
  };
  const int64_t h = c.hidden_size, v = c.vocab_size, in = c.intermediate_size;
  std::map<std::string, torch::Tensor> t;
  t["gpt_neox.embed_in.weight"] = normal({v, h}, 0, 0.5);
  t["gpt_neox.final_layer_norm.weight"] = normal({h}, 1.0, 0.1);
  t["gpt_neox.final_layer_norm.bias"] = normal({h}, 0, 0.1);
  if (!c.tie_word_embeddings) t["embed_out.weight"] = normal({v, h}, 0, 0.3);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("gpt_neox.layers.", i, ".");
    t[p + "input_layernorm.weight"] = normal({h}, 1.0, 0.1);
    t[p + "input_layernorm.bias"] = normal({h}, 0, 0.1);
    t[p + "post_attention_layernorm.weight"] = normal({h}, 1.0, 0.1);
    t[p + "post_attention_layernorm.bias"] = normal({h}, 0, 0.1);
    t[p + "attention.query_key_value.weight"] = normal({3 * h, h}, 0, 0.2);
    t[p + "attention.query_key_value.bias"] = normal({3 * h}, 0, 0.05);
    t[p + "attention.dense.weight"] = normal({h, h}, 0, 0.1);
    t[p + "attention.dense.bias"] = normal({h}, 0, 0.05);
    t[p + "mlp.dense_h_to_4h.weight"] = normal({in, h}, 0, 0.1);
    t[p + "mlp.dense_h_to_4h.bias"] = normal({in}, 0, 0.05);
    t[p + "mlp.dense_4h_to_h.weight"] = normal({h, in}, 0, 0.1);
    t[p + "mlp.dense_4h_to_h.bias"] = normal({h}, 0, 0.05);
  }
  return t;
}

torch::Tensor GptNeoX::Embed(const torch::Tensor& ids) const {
  // non_blocking: ids in pinned memory (the teacher pipeline's) reach the
  // GPU without the host waiting for the work queued before them.
  return torch::nn::functional::embedding(
      ids.to(options_.device, /*non_blocking=*/true), embed_in_);
}

torch::Tensor GptNeoX::RunLayers(torch::Tensor x, int64_t begin, int64_t end,
                                 int64_t offset,
                                 std::vector<LayerKV>* cache) const {
  for (int64_t i = begin; i < end; ++i) {
    x = NeoXLayer(layers_[i], shape_, x, offset,
                  cache ? &(*cache)[i] : nullptr);
  }
  return x;
}

torch::Tensor GptNeoX::Head(const torch::Tensor& x) const {
  torch::Tensor h = torch::layer_norm(x, {shape_.hidden}, final_ln_w_,
                                      final_ln_b_, shape_.eps);
  return torch::nn::functional::linear(h, embed_out_).to(torch::kFloat);
}

absl::Status GptNeoX::CheckIds(const torch::Tensor& ids) const {
  if (!ids.defined() || ids.dim() != 2 || ids.size(1) == 0 ||
      !(ids.scalar_type() == torch::kLong ||
        ids.scalar_type() == torch::kInt)) {
    return absl::InvalidArgumentError(
        "ids must be a non-empty [B, T] int64 tensor");
  }
  const int64_t lo = ids.min().item<int64_t>(), hi = ids.max().item<int64_t>();
  if (lo < 0 || hi >= config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("token id out of range [0, ",
                                                   config_.vocab_size,
                                                   "): saw ", lo, "..", hi));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> GptNeoX::Extract(
    const torch::Tensor& ids, int64_t m, int64_t n) const {
  const int64_t L = config_.num_hidden_layers;
  if (m < 0 || m >= n || n > L) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block [m, n) = [", m, ", ", n, ") must satisfy 0 <= m < n <= ", L));
  }
  return GuardTorch(
      "GptNeoX::Extract",
      [&]() -> absl::StatusOr<std::pair<torch::Tensor, torch::Tensor>> {
        LFT_RETURN_IF_ERROR(CheckIds(ids));
        torch::NoGradGuard no_grad;
        torch::Tensor x0 = RunLayers(Embed(ids), 0, m);
        torch::Tensor x1 = RunLayers(x0, m, n);
        return std::make_pair(x0, x1);
      });
}

absl::StatusOr<torch::Tensor> GptNeoX::Tail(const torch::Tensor& x,
                                            int64_t n) const {
  if (n < 0 || n > config_.num_hidden_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("tail start n = ", n, " must lie in [0, ",
                     config_.num_hidden_layers, "]"));
  }
  if (!x.defined() || x.dim() != 3 || x.size(2) != config_.hidden_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("hidden state must be [B, T, ", config_.hidden_size, "]"));
  }
  return GuardTorch("GptNeoX::Tail", [&]() -> absl::StatusOr<torch::Tensor> {
    return Head(RunLayers(x.to(options_.device, options_.dtype), n,
                          config_.num_hidden_layers));
  });
}

absl::StatusOr<NeoXForwardResult> GptNeoX::Forward(
    const torch::Tensor& ids) const {
  return GuardTorch(
      "GptNeoX::Forward", [&]() -> absl::StatusOr<NeoXForwardResult> {
        LFT_RETURN_IF_ERROR(CheckIds(ids));
        torch::NoGradGuard no_grad;
        NeoXForwardResult r;
        torch::Tensor x = Embed(ids);
        for (int64_t i = 0; i < config_.num_hidden_layers; ++i) {
          r.hidden_states.push_back(x);
          x = NeoXLayer(layers_[i], shape_, x, 0, nullptr);
        }
        r.hidden_states.push_back(torch::layer_norm(
            x, {shape_.hidden}, final_ln_w_, final_ln_b_, shape_.eps));
        r.logits =
            torch::nn::functional::linear(r.hidden_states.back(), embed_out_)
                .to(torch::kFloat);
        return r;
      });
}

absl::StatusOr<torch::Tensor> GptNeoX::Generate(
    const torch::Tensor& ids, const NeoXGenerateOptions& o) const {
  if (o.max_new_tokens < 0 || o.temperature < 0 || o.top_k < 0) {
    return absl::InvalidArgumentError(
        "max_new_tokens, temperature and top_k must be non-negative");
  }
  return GuardTorch(
      "GptNeoX::Generate", [&]() -> absl::StatusOr<torch::Tensor> {
        LFT_RETURN_IF_ERROR(CheckIds(ids));
        torch::NoGradGuard no_grad;
        std::mt19937_64 rng(o.seed);
        torch::Tensor seq = ids.to(torch::kCPU, torch::kLong).clone();
        std::vector<LayerKV> cache(config_.num_hidden_layers);
        torch::Tensor step_in = seq;
        int64_t offset = 0;
        for (int64_t step = 0; step < o.max_new_tokens; ++step) {
          torch::Tensor logits;
          if (o.use_cache) {
            torch::Tensor x = RunLayers(
                Embed(step_in), 0, config_.num_hidden_layers, offset, &cache);
            offset += step_in.size(1);
            logits = Head(x.narrow(1, x.size(1) - 1, 1));
          } else {
            torch::Tensor x =
                RunLayers(Embed(seq), 0, config_.num_hidden_layers);
            logits = Head(x.narrow(1, x.size(1) - 1, 1));
          }
          torch::Tensor last =
              logits.squeeze(1).to(torch::kCPU, torch::kDouble);  // [B, V]
          const int64_t b = last.size(0), v = last.size(1);
          torch::Tensor next = torch::empty({b, 1}, torch::kLong);
          for (int64_t r = 0; r < b; ++r) {
            torch::Tensor rowt = last[r].contiguous();
            const double* row = rowt.data_ptr<double>();
            int64_t choice = 0;
            if (o.temperature == 0.0) {
              for (int64_t j = 1; j < v; ++j) {
                if (row[j] > row[choice]) choice = j;
              }
            } else {
              std::vector<int64_t> idx(v);
              for (int64_t j = 0; j < v; ++j) idx[j] = j;
              int64_t keep = (o.top_k > 0 && o.top_k < v) ? o.top_k : v;
              std::partial_sort(idx.begin(), idx.begin() + keep, idx.end(),
                                [&](int64_t a, int64_t c) {
                                  return row[a] > row[c] ||
                                         (row[a] == row[c] && a < c);
                                });
              std::vector<double> p(keep);
              const double mx = row[idx[0]];
              double sum = 0;
              for (int64_t j = 0; j < keep; ++j) {
                p[j] = std::exp((row[idx[j]] - mx) / o.temperature);
                sum += p[j];
              }
              double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
              choice = idx[keep - 1];
              for (int64_t j = 0; j < keep; ++j) {
                if (u < p[j]) {
                  choice = idx[j];
                  break;
                }
                u -= p[j];
              }
            }
            next[r][0] = choice;
          }
          seq = torch::cat({seq, next}, 1);
          step_in = next;
        }
        return seq;
      });
}

}  // namespace lft
