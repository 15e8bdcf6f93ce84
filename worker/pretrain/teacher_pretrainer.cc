#include "worker/pretrain/teacher_pretrainer.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/corpus/jsonl_zst.h"
#include "common/tensor/safetensors.h"
#include "common/text/bpe_tokenizer.h"
#include "worker/model/adamw.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/torch_guard.h"

namespace lft {
namespace {

using Params = std::map<std::string, torch::Tensor>;

// HF-named parameters initialised as GPT-NeoX / GPT-2 do: normal(0, 0.02)
// weights, output projections of each residual branch scaled by
// 1/sqrt(2 L) so the residual stream's variance stays flat with depth,
// LayerNorm weights 1, biases 0.
Params InitParams(const NeoXConfig& c, torch::Device device, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  const int64_t h = c.hidden_size, v = c.vocab_size, in = c.intermediate_size;
  const double std = 0.02,
               out_std = 0.02 / std::sqrt(2.0 * c.num_hidden_layers);
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  auto normal = [&](std::vector<int64_t> shape, double s) {
    return torch::randn(shape, opts) * s;
  };
  Params p;
  p["gpt_neox.embed_in.weight"] = normal({v, h}, std);
  p["gpt_neox.final_layer_norm.weight"] = torch::ones({h}, opts);
  p["gpt_neox.final_layer_norm.bias"] = torch::zeros({h}, opts);
  if (!c.tie_word_embeddings) p["embed_out.weight"] = normal({v, h}, std);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = absl::StrCat("gpt_neox.layers.", i, ".");
    p[l + "input_layernorm.weight"] = torch::ones({h}, opts);
    p[l + "input_layernorm.bias"] = torch::zeros({h}, opts);
    p[l + "post_attention_layernorm.weight"] = torch::ones({h}, opts);
    p[l + "post_attention_layernorm.bias"] = torch::zeros({h}, opts);
    p[l + "attention.query_key_value.weight"] = normal({3 * h, h}, std);
    p[l + "attention.dense.weight"] = normal({h, h}, out_std);
    if (c.attention_bias) {
      p[l + "attention.query_key_value.bias"] = torch::zeros({3 * h}, opts);
      p[l + "attention.dense.bias"] = torch::zeros({h}, opts);
    }
    p[l + "mlp.dense_h_to_4h.weight"] = normal({in, h}, std);
    p[l + "mlp.dense_h_to_4h.bias"] = torch::zeros({in}, opts);
    p[l + "mlp.dense_4h_to_h.weight"] = normal({h, in}, out_std);
    p[l + "mlp.dense_4h_to_h.bias"] = torch::zeros({h}, opts);
  }
  for (auto& [name, t] : p) t.set_requires_grad(true);
  return p;
}

bool Decays(const std::string& name) {
  return name.find("layernorm") == std::string::npos &&
         name.find("layer_norm") == std::string::npos &&
         name.compare(name.size() - 5, 5, ".bias") != 0;
}

// Mean NLL (nats/token) of `model` over consecutive windows of `stream`.
double HeldoutLoss(const GptNeoX& model, const std::vector<int32_t>& stream,
                   int64_t seq, int64_t max_windows, torch::Device device,
                   int64_t* tokens) {
  torch::NoGradGuard no_grad;
  const int64_t windows = std::min<int64_t>(
      max_windows, (static_cast<int64_t>(stream.size()) - 1) / seq);
  double total = 0;
  *tokens = 0;
  constexpr int64_t kBatch = 16;
  for (int64_t w0 = 0; w0 < windows; w0 += kBatch) {
    const int64_t b = std::min(kBatch, windows - w0);
    auto ids = torch::empty({b, seq + 1}, torch::kLong);
    auto acc = ids.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i) {
      for (int64_t t = 0; t <= seq; ++t) acc[i][t] = stream[(w0 + i) * seq + t];
    }
    ids = ids.to(device);
    auto logits =
        model.Head(model.RunLayers(model.Embed(ids.slice(1, 0, seq)), 0,
                                   model.config().num_hidden_layers));
    auto nll = torch::nn::functional::cross_entropy(
        logits.reshape({-1, logits.size(-1)}), ids.slice(1, 1).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().reduction(
            torch::kSum));
    total += nll.item<double>();
    *tokens += b * seq;
  }
  return *tokens > 0 ? total / static_cast<double>(*tokens) : 0;
}

double UnigramEntropy(const std::vector<int32_t>& train,
                      const std::vector<int32_t>& heldout, int64_t vocab,
                      int64_t seq, int64_t windows) {
  std::vector<double> counts(static_cast<size_t>(vocab), 1.0);  // add-one
  for (int32_t t : train) {
    if (t >= 0 && t < vocab) counts[t] += 1;
  }
  const double total =
      static_cast<double>(train.size()) + static_cast<double>(vocab);
  double nll = 0;
  int64_t n = 0;
  for (int64_t w = 0; w < windows; ++w) {
    for (int64_t t = 1; t <= seq; ++t) {
      const int32_t id = heldout[w * seq + t];
      nll -= std::log(counts[id] / total);
      ++n;
    }
  }
  return n > 0 ? nll / static_cast<double>(n) : 0;
}

absl::Status SaveHfDirectory(const Params& params, const NeoXConfig& config,
                             const std::string& tokenizer_json,
                             const std::string& out_dir) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  }
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  for (const auto& [name, t] : params) {
    torch::Tensor cpu = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
    std::vector<int64_t> shape(cpu.sizes().begin(), cpu.sizes().end());
    LFT_RETURN_IF_ERROR(writer.Add(
        name, DType::kF32, shape,
        absl::MakeConstSpan(static_cast<const uint8_t*>(cpu.data_ptr()),
                            cpu.nbytes())));
  }
  LFT_RETURN_IF_ERROR(writer.WriteFile(out_dir + "/model.safetensors"));
  LFT_RETURN_IF_ERROR(
      WriteFileAtomically(out_dir + "/config.json", NeoXConfigToJson(config)));
  return WriteFileAtomically(out_dir + "/tokenizer.json", tokenizer_json);
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> TokenizeCorpus(
    const std::vector<std::string>& files, BpeTokenizer& tokenizer,
    int32_t eos_id, int64_t max_tokens) {
  std::vector<int32_t> stream;
  for (const std::string& file : files) {
    LFT_ASSIGN_OR_RETURN(auto reader, JsonlZstReader::Open(file));
    JsonlDocument doc;
    while (true) {
      LFT_ASSIGN_OR_RETURN(bool more, reader->Next(&doc));
      if (!more) break;
      tokenizer.Encode(doc.text, &stream);
      stream.push_back(eos_id);
      if (max_tokens > 0 && static_cast<int64_t>(stream.size()) >= max_tokens) {
        stream.resize(static_cast<size_t>(max_tokens));
        return stream;
      }
    }
  }
  return stream;
}

absl::StatusOr<PretrainReport> PretrainTeacher(
    const std::vector<int32_t>& train_tokens,
    const std::vector<int32_t>& heldout_tokens, const PretrainOptions& options,
    const std::string& tokenizer_json, const std::string& out_dir,
    const std::function<void(const PretrainProgress&)>& on_progress) {
  const NeoXConfig& config = options.config;
  const int64_t seq = options.sequence_length;
  if (seq < 2 || seq > config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence_length ", seq, " must be in [2, max_position_embeddings = ",
        config.max_position_embeddings, "]"));
  }
  if (static_cast<int64_t>(train_tokens.size()) < seq + 2 ||
      static_cast<int64_t>(heldout_tokens.size()) < seq + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "corpus too small: ", train_tokens.size(), " training and ",
        heldout_tokens.size(), " held-out tokens for windows of ", seq + 1));
  }
  for (const auto* stream : {&train_tokens, &heldout_tokens}) {
    for (int32_t t : *stream) {
      if (t < 0 || t >= config.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            "token id ", t, " outside the vocabulary of ", config.vocab_size));
      }
    }
  }
  return GuardTorch("PretrainTeacher", [&]() -> absl::StatusOr<PretrainReport> {
    if (options.num_threads > 0) torch::set_num_threads(options.num_threads);
    const torch::Device device(options.device);
    if (device.is_cuda()) at::globalContext().setAllowTF32CuBLAS(true);
    Params params = InitParams(config, device, options.seed);
    LFT_ASSIGN_OR_RETURN(
        auto model, GptNeoX::FromTensors(config, params,
                                         {device, torch::kFloat}, "pretrain"));

    std::vector<torch::Tensor> decay, no_decay;
    int64_t num_params = 0;
    for (auto& [name, t] : params) {
      (Decays(name) ? decay : no_decay).push_back(t);
      num_params += t.numel();
    }
    AdamWOptions adam_options;
    adam_options.beta2 = 0.95;
    AdamW optimizer(
        {AdamWGroup{decay, options.weight_decay}, AdamWGroup{no_decay, 0.0}},
        adam_options);
    torch::Tensor grad = torch::zeros_like(optimizer.master());

    std::mt19937_64 rng(options.seed);
    std::uniform_int_distribution<int64_t> offset_dist(
        0, static_cast<int64_t>(train_tokens.size()) - seq - 1);
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                           start)
          .count();
    };
    PretrainReport report;
    report.parameters = num_params;
    const int64_t b = options.batch_sequences;
    double loss_ema = 0;
    for (int64_t step = 0; step < options.max_steps; ++step) {
      if (options.max_seconds > 0 && elapsed() > options.max_seconds) {
        report.stopped_by_time_cap = true;
        break;
      }
      const double warm = std::min(
          1.0, (step + 1.0) / std::max<int64_t>(1, options.warmup_steps));
      const double progress =
          static_cast<double>(step) / static_cast<double>(options.max_steps);
      const double lr = options.learning_rate * warm *
                        (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * progress)));
      auto ids = torch::empty({b, seq + 1}, torch::kLong);
      auto acc = ids.accessor<int64_t, 2>();
      for (int64_t i = 0; i < b; ++i) {
        const int64_t off = offset_dist(rng);
        for (int64_t t = 0; t <= seq; ++t) acc[i][t] = train_tokens[off + t];
      }
      ids = ids.to(device);
      auto logits = model->Head(model->RunLayers(
          model->Embed(ids.slice(1, 0, seq)), 0, config.num_hidden_layers));
      auto loss = torch::nn::functional::cross_entropy(
          logits.reshape({-1, logits.size(-1)}), ids.slice(1, 1).reshape({-1}));
      for (const torch::Tensor& p : optimizer.params())
        p.mutable_grad().reset();
      loss.backward();
      optimizer.GatherGradients(grad);
      optimizer.Step(grad, lr,
                     ClipCoefficient(grad, options.gradient_clip_norm));
      const double l = loss.item<double>();
      loss_ema = step == 0 ? l : 0.95 * loss_ema + 0.05 * l;
      report.steps = step + 1;
      report.tokens_trained += b * seq;
      const bool eval_now =
          options.eval_every > 0 && (step + 1) % options.eval_every == 0;
      if (on_progress && (eval_now || (step + 1) % 10 == 0)) {
        PretrainProgress p;
        p.step = step + 1;
        p.train_loss = loss_ema;
        p.seconds = elapsed();
        p.tokens_per_second =
            static_cast<double>(report.tokens_trained) / p.seconds;
        if (eval_now) {
          int64_t n;
          p.heldout_loss = HeldoutLoss(*model, heldout_tokens, seq,
                                       options.heldout_sequences, device, &n);
        }
        on_progress(p);
      }
    }
    report.seconds = elapsed();
    report.tokens_per_second =
        static_cast<double>(report.tokens_trained) / report.seconds;
    report.final_train_loss = loss_ema;
    report.heldout_loss =
        HeldoutLoss(*model, heldout_tokens, seq, options.heldout_sequences,
                    device, &report.heldout_tokens);
    report.heldout_perplexity = std::exp(report.heldout_loss);
    report.unigram_entropy =
        UnigramEntropy(train_tokens, heldout_tokens, config.vocab_size, seq,
                       report.heldout_tokens / seq);
    LFT_RETURN_IF_ERROR(
        SaveHfDirectory(params, config, tokenizer_json, out_dir));
    return report;
  });
}

}  // namespace lft
